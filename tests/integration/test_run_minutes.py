"""`status`, the dashboard's chart and its figures count finished runs from `run_minutes`
(migration 10), kept as runs are recorded, instead of reading every run of the window (capped
at 200,000: under a steady 1,000 runs a second `status` reported 200,000 runs for the 1,000,000
of its 15 minutes, and took 0.65 s; DECISIONS.md §37). These tests hold the counts equal to
the history by every way a run is recorded, on both backends, at any window edge."""

from __future__ import annotations

import pytest

from queuectl import stats
from queuectl.api import Queue
from queuectl.models import FINISHED_OUTCOMES, NewJob
from queuectl.overview import render_status, status_data
from queuectl.store import open_store
from queuectl.store.jobstore import SCHEMA_VERSION, WorkerIdentity

from .common import T0, A, B, open_store_of_version

M = 60 * (int(T0) // 60)  # a minute's start, so the times below cross minutes where intended


def finished_since(store, since: float) -> tuple[int, int]:
    """The truth, the slow way: (finished, failed) runs in the history from `since` on."""
    runs = [r for r in store.attempt_history(0, limit=10**6) if r["finished_at"] >= since
            and r["outcome"] in FINISHED_OUTCOMES]
    return len(runs), sum(r["outcome"] != "completed" for r in runs)


def by_minute(store) -> dict[int, tuple[int, int]]:
    """The truth per minute, from the history."""
    found: dict[int, tuple[int, int]] = {}
    for r in store.attempt_history(0, limit=10**6):
        if r["outcome"] in FINISHED_OUTCOMES:
            runs, failed = found.get(int(r["finished_at"] // 60), (0, 0))
            found[int(r["finished_at"] // 60)] = (runs + 1, failed + (r["outcome"] != "completed"))
    return found


def record_every_way(store) -> None:
    """Runs recorded by each path, their finish times spread over four minutes: one at a time
    (completed, failed, dead, timed out), released and cancelled (not finished runs), a batch
    of held results across a minute's end with one of them refused, and crashes found by
    recovery, and a last failure that makes a job dead."""
    settings = store.settings()
    store.enqueue([NewJob(id=f"j{i:02d}", command="true", queue="ab"[i % 2], max_retries=1)
                   for i in range(20)], M)
    assert store.complete(store.claim(A, M + 1, 600), M + 2)
    assert store.fail(store.claim(A, M + 3, 600), M + 59.5, settings, 1, "boom") == "failed"
    assert store.fail(store.claim(A, M + 60, 600), M + 60, settings, 1, "boom",
                      outcome="timeout") == "failed"
    assert store.release(store.claim(A, M + 61, 600), M + 62, reason="cold stop")
    running = store.claim(A, M + 63, 600)
    assert store.finish_cancelled(running, M + 64, 137) is not None
    _, batch = store.record_batch([], A, M + 65, 600, claim=5)
    assert store.unclaim(batch[2], M + 66)
    ends = (M + 119, M + 119.9, M + 120, M + 120.5, M + 121)
    records = [lambda job=job, t=t: store.complete(job, t)
               for job, t in zip(batch, ends, strict=True)]
    results, _ = store.record_batch(records, A, M + 121, 600, claim=1)
    assert results == [True, True, False, True, True]
    lost = store.claim(B, M + 130, 600)
    assert len(store.recover_lost(M + 150, settings, [B.id])) == 1  # B is gone
    assert store.attempts(lost.id)[-1]["outcome"] == "crashed"
    only_z = WorkerIdentity(id="z", host=A.host, pid=A.pid, queues=["z"])
    store.enqueue([NewJob(id="last", command="true", queue="z", max_retries=0)], M)
    assert store.fail(store.claim(only_z, M + 170, 600), M + 181, settings, 1, "boom") == "dead"


def test_every_way_of_recording_a_run_counts_in_its_minute(store):
    record_every_way(store)
    truth = by_minute(store)
    assert sum(runs for runs, _ in truth.values()) == 9  # what record_every_way finished
    assert store.finished_by_minute(0) == truth
    assert store.finished_by_minute(M // 60 + 2) == {m: n for m, n in truth.items()
                                                      if m >= M // 60 + 2}


@pytest.mark.parametrize("now", [M + 121, M + 150.25, M + 181, M + 200, M + 3600])
def test_a_window_counts_the_runs_finished_in_it_at_any_edge(store, now):
    record_every_way(store)
    windows = [1, 30, 58.5, 60, 61, 90.7, 119.5, 120, 179, 300, 900]
    found = store.finished_in_windows(now, windows)
    assert found == {w: finished_since(store, now - w) for w in windows}


def test_a_window_reads_at_most_half_a_minute_of_history(store, monkeypatch):
    """Of a window's first minute, only the shorter side of its edge is counted from the
    history (the rest comes from the kept count), so a busy minute costs half the read."""
    record_every_way(store)
    spans: list[float] = []
    count = store._finished_between

    def spy(since, until):
        spans.append(until - since)
        return count(since, until)

    monkeypatch.setattr(store, "_finished_between", spy)
    for offset in (0, 10, 29.9, 30, 30.1, 45, 59.9):
        now = M + 180 + offset
        windows = [60, 61, 90, 119.5]
        assert store.finished_in_windows(now, windows) == {
            w: finished_since(store, now - w) for w in windows}
    assert spans and max(spans) <= 30, spans


def test_a_queue_made_before_migration_10_counts_the_history_it_holds(db):
    store = open_store_of_version(db, 9)
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(3)], T0)
    with store.db.transaction():
        for i, outcome in enumerate(["completed", "failed", "released"]):
            store.db.execute("import_attempt", {
                "job_id": f"j{i}", "run": 1, "worker_id": A.id, "host": A.host,
                "started_at": M, "finished_at": M + 30 + 60 * i, "outcome": outcome,
                "exit_code": 0, "error": None, "output_bytes": 0})
    store.close()
    store = open_store(db)
    try:
        assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        assert store.finished_by_minute(0) == {M // 60: (1, 0), M // 60 + 1: (1, 1)}
    finally:
        store.close()


def test_a_recount_rebuilds_them_and_a_purge_drops_the_minutes_before_its_cut_off(store):
    record_every_way(store)
    truth = by_minute(store)
    store.db.run_script("DELETE FROM run_minutes")
    assert store.finished_by_minute(0) == {}
    store.recount()
    assert store.finished_by_minute(0) == truth
    store.purge(["completed"], before=M + 120.5)
    assert store.finished_by_minute(0) == {m: n for m, n in truth.items() if m >= M // 60 + 2}


def test_status_counts_every_run_and_takes_percentiles_from_the_newest(db, monkeypatch):
    """More runs in the window than the percentiles read: the counts stay exact, and status
    says which runs the percentiles are of."""
    from queuectl import overview

    monkeypatch.setattr(overview, "PERCENTILE_RUNS", 4)
    store = open_store(db)
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(9)], M)
    settings = store.settings()
    for i in range(9):
        job = store.claim(A, M + 10 * i, 600)
        if i % 3:
            assert store.complete(job, M + 10 * i + 1 + i)  # run i + 1 seconds
        else:
            store.fail(job, M + 10 * i + 1 + i, settings, 1, "boom")
    store.close()
    with Queue(db, create=False) as queue:
        data = status_data(queue, M + 100)
    last = data["last_15m"]
    assert (last["runs"], last["failed"], last["failure_rate"]) == (9, 3, round(3 / 9, 4))
    assert data["throughput_per_minute"] == {"1m": 5.0, "5m": 1.8, "15m": 0.6}  # 5 after M + 40
    assert last["percentiles_of_runs"] == 4
    assert (last["run_p50"], last["run_p95"]) == (7.0, 9.0)  # of runs 6..9 seconds long
    assert "(of the newest 4 runs)" in render_status(data, M + 100)


def test_the_dashboard_chart_is_the_kept_minutes(store):
    record_every_way(store)
    points = stats.series(store.finished_by_minute(stats.chart_start(M + 200, 5)), M + 200, 5)
    truth = by_minute(store)
    assert [(p["runs"], p["failed"]) for p in points] == [
        truth.get(p["t"] // 60, (0, 0)) for p in points]
    assert sum(p["runs"] for p in points) == 9


def test_stats_counts_the_whole_window_and_says_which_runs_the_rest_is_of(db, monkeypatch):
    from queuectl import overview

    store = open_store(db)
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="ab"[i % 2]) for i in range(8)], M)
    settings = store.settings()
    for i in range(8):
        job = store.claim(A, M + 10 * i, 600)
        if i % 4:
            assert store.complete(job, M + 10 * i + 1)
        else:
            store.fail(job, M + 10 * i + 1, settings, 1, "boom")
    store.close()
    with Queue(db, create=False) as queue:
        whole = overview.stats_report(queue, 600, M + 100)
        monkeypatch.setattr(overview, "STATS_RUNS", 3)
        capped = overview.stats_report(queue, 600, M + 100)
    assert (whole["runs_read"], whole["runs_read_since"]) == (8, None)
    assert whole["total"]["runs"] == 8 and whole["total"]["failed"] == 2
    assert capped["total"] == {**whole["total"], **{k: capped["total"][k] for k in (
        "wait_p50", "wait_p95", "run_p50", "run_p95")}}  # the counts: the same
    assert (capped["runs_read"], capped["runs_read_since"]) == (3, M + 51)
    assert sum(q["runs"] for q in capped["queues"].values()) == 3  # of the newest three,
    assert capped["queues"]["b"]["per_minute"] == round(2 / ((100 - 51) / 60), 3)  # their span
    assert capped["since"] == whole["since"] == M + 100 - 600
