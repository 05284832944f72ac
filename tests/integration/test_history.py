"""The history queries behind `stats` and `status`, on each backend, with the clock passed in:
a known sequence of claims and finishes must come back as known rows and figures."""

from __future__ import annotations

from queuectl import stats
from queuectl.models import NewJob

from .common import T0, A

LEASE = 15.0


def _claim(store, now):
    return store.claim(A, now, LEASE)


def test_history_rows_and_figures(store):
    store.config_set("backoff-base", "2")
    store.config_set("backoff-jitter", "0")
    store.enqueue([NewJob(id="a", command="make", queue="build")], T0)
    store.enqueue([NewJob(id="b", command="flaky", delay=10.0, max_retries=1)], T0)
    store.enqueue([NewJob(id="c", command="later", queue="build", delay=1000.0)], T0)

    job = _claim(store, T0 + 5)
    assert job.id == "a"
    assert store.complete(job, T0 + 7)
    job = _claim(store, T0 + 12)
    assert job.id == "b"
    assert store.fail(job, T0 + 13, store.settings(), 1, "boom") == "failed"  # due T0 + 15
    assert _claim(store, T0 + 14) is None  # b is not due yet, nor is c
    job = _claim(store, T0 + 20)
    assert job.id == "b"
    assert store.complete(job, T0 + 21)

    rows = store.attempt_history(T0)
    assert [(r["job_id"], r["run"], r["outcome"]) for r in rows] == [
        ("b", 2, "completed"), ("b", 1, "failed"), ("a", 1, "completed")]
    by_run = {(r["job_id"], r["run"]): r for r in rows}
    assert by_run["a", 1]["due_at"] == T0            # finished job: its run_at is known
    assert by_run["b", 2]["due_at"] == T0 + 15       # the retry's due time, after backoff
    assert by_run["b", 1]["due_at"] is None          # superseded by the retry's run_at
    assert by_run["b", 1]["ready_at"] == T0          # so: since the job was created
    assert by_run["b", 2]["ready_at"] == T0 + 13     # (fallback) since the run before ended
    assert {r["queue"] for r in rows} == {"build", "default"}

    assert [r["run"] for r in store.attempt_history(T0 + 13)] == [2, 1]  # bounded by since
    assert len(store.attempt_history(T0, limit=1)) == 1

    report = stats.compute(rows, T0, T0 + 60)
    assert report["total"]["runs"] == 3
    assert report["total"]["failure_rate"] == round(1 / 3, 4)
    assert report["queues"]["build"] == {
        "runs": 1, "completed": 1, "failed": 0, "per_minute": 1.0, "failure_rate": 0.0,
        "wait_p50": 5.0, "wait_p95": 5.0, "run_p50": 2.0, "run_p95": 2.0}
    flaky = report["commands"]["flaky"]
    assert (flaky["wait_p50"], flaky["wait_p95"]) == (5.0, 12.0)
    assert (flaky["run_p50"], flaky["run_p95"]) == (1.0, 1.0)
    finished = store.finished_in_windows(T0 + 60, [60, 300, 900])
    assert finished == {60: (3, 1), 300: (3, 1), 900: (3, 1)}
    assert stats.per_minute({s // 60: n for s, n in finished.items()}) == {
        "1m": 3.0, "5m": 0.6, "15m": 0.2}


def test_counts_by_queue(store):
    store.enqueue([NewJob(id="a", command="true", queue="q2"),
                   NewJob(id="b", command="true", queue="q1"),
                   NewJob(id="c", command="true", queue="q1")], T0)
    store.complete(_claim(store, T0 + 1), T0 + 2)
    counts = store.counts_by_queue()
    assert list(counts) == ["q1", "q2"]
    assert counts["q2"]["completed"] == 1 and counts["q2"]["pending"] == 0
    assert counts["q1"]["pending"] == 2
    assert set(counts["q1"]) == set(store.counts())


def test_oldest_due_and_totals(store):
    assert store.oldest_due(T0) is None
    store.enqueue([NewJob(id="a", command="true"), NewJob(id="b", command="true", delay=50.0)],
                  T0)
    assert store.oldest_due(T0 + 10) == T0
    store.complete(_claim(store, T0 + 1), T0 + 2)
    assert store.oldest_due(T0 + 10) is None          # b is not due yet
    assert store.oldest_due(T0 + 60) == T0 + 50
    assert store.attempt_totals() == [{"queue": "default", "outcome": "completed", "n": 1}]
