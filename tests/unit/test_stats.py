"""stats.py over hand-written histories: every figure is worked out here by hand."""

import pytest

from queuectl import stats

T = 1_000_000.0


def run(job, started, finished, outcome="completed", queue="default", command="true",
        run_no=1, due_at=None, ready_at=None):
    return {"job_id": job, "run": run_no, "started_at": T + started, "finished_at": T + finished,
            "outcome": outcome, "queue": queue, "command": command,
            "due_at": None if due_at is None else T + due_at,
            "ready_at": None if ready_at is None else T + ready_at}


@pytest.mark.parametrize("q, expected", [(0, 1), (50, 5), (90, 9), (95, 10), (100, 10)])
def test_nearest_rank_percentile(q, expected):
    assert stats.percentile([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], q) == expected


def test_percentile_of_nothing_is_none():
    assert stats.percentile([], 50) is None


def test_p95_of_a_few_values_is_the_largest():
    assert stats.percentile([1.0, 2.0, 30.0], 95) == 30.0
    assert stats.percentile([1.0, 2.0, 30.0], 50) == 2.0


def test_wait_uses_the_due_time_when_known():
    assert stats.wait_seconds(run("a", 10, 11, due_at=4, ready_at=0)) == 6


def test_wait_falls_back_to_ready_time():
    assert stats.wait_seconds(run("a", 10, 11, ready_at=3)) == 7


def test_a_due_time_after_the_start_is_not_trusted():
    # run_at can move on after the run (dlq retry): never report a negative or wrong wait.
    assert stats.wait_seconds(run("a", 10, 11, due_at=50, ready_at=2)) == 8


def test_wait_is_never_negative():
    assert stats.wait_seconds(run("a", 10, 11, ready_at=12)) == 0


def test_summary_of_a_known_history():
    rows = [
        run("a", 0, 2, ready_at=0),                        # wait 0, run 2
        run("b", 1, 5, "failed", ready_at=0),               # wait 1, run 4
        run("c", 3, 4, "timeout", ready_at=1),              # wait 2, run 1
        run("d", 10, 13, ready_at=2),                       # wait 8, run 3
        run("e", 5, 6, "released", ready_at=0),             # operator's doing: left out
        run("f", 5, 7, "cancelled", ready_at=0),            # left out too
    ]
    s = stats.summarize(rows, 120)
    assert (s["runs"], s["completed"], s["failed"]) == (4, 2, 2)
    assert s["per_minute"] == 2.0
    assert s["failure_rate"] == 0.5
    assert (s["wait_p50"], s["wait_p95"]) == (1.0, 8.0)
    assert (s["run_p50"], s["run_p95"]) == (2.0, 4.0)


def test_summary_of_nothing():
    s = stats.summarize([], 60)
    assert (s["runs"], s["per_minute"], s["failure_rate"], s["run_p50"]) == (0, 0.0, None, None)


def test_compute_groups_by_queue_and_command_within_the_window():
    rows = [
        run("a", 0, 10, queue="q1", command="make"),
        run("b", 0, 20, "crashed", queue="q1", command="make"),
        run("c", 0, 30, queue="q2", command="ls"),
        run("old", -500, -400, queue="q3", command="old"),   # finished before the window
    ]
    report = stats.compute(rows, T, T + 60)
    assert report["total"]["runs"] == 3
    assert list(report["queues"]) == ["q1", "q2"]
    assert report["queues"]["q1"]["failure_rate"] == 0.5
    assert report["queues"]["q2"]["runs"] == 1
    assert report["commands"]["make"]["run_p95"] == 20.0
    assert "old" not in report["commands"]


def test_per_minute_divides_each_window_s_finished_runs_by_its_minutes():
    assert stats.per_minute({1: (2, 1), 5: (4, 1), 15: (5, 2)}) == {
        "1m": 2.0, "5m": 0.8, "15m": round(5 / 15, 3)}


def test_series_lays_the_kept_minutes_out_oldest_first():
    now = 6000.0 + 30  # half a minute into minute 100 (the one starting at 6000)
    assert stats.chart_start(now, minutes=3) == 98
    points = stats.series({97: (5, 5), 99: (1, 0), 100: (3, 1)}, now, minutes=3)
    assert [p["t"] for p in points] == [5880, 5940, 6000]
    assert [(p["runs"], p["failed"]) for p in points] == [(0, 0), (1, 0), (3, 1)]
