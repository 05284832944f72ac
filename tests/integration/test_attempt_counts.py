"""The Prometheus run counters (queuectl_attempts_total, queuectl_failures_total) come from
`attempt_counts`, kept by a trigger on `attempts` (migration 8), not from a count of the whole
history at every scrape. They must count every run recorded by every path, on every backend,
never drop when old history is purged, and a queue made before migration 8 must start them
from the history it holds."""

from __future__ import annotations

import re

import pytest

from queuectl import sql
from queuectl.models import NewJob, minute_of
from queuectl.store import open_store
from queuectl.store.jobstore import SCHEMA_VERSION

from .common import T0, A, B, open_store_of_version


def history(store) -> dict[tuple[str, str], int]:
    """The truth, the slow way: every recorded run counted."""
    found: dict[tuple[str, str], int] = {}
    for job in store.list(limit=10**6):
        for run in store.attempts(job.id):
            key = (job.queue, run["outcome"])
            found[key] = found.get(key, 0) + 1
    return found


def totals(store) -> dict[tuple[str, str], int]:
    return {(r["queue"], r["outcome"]): r["n"] for r in store.attempt_totals()}


def test_every_way_of_recording_a_run_is_counted(store):
    settings = store.settings()
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="a" if i % 2 else "b")
                   for i in range(10)], T0)
    first, second = store.claim(A, T0, 15), store.claim(B, T0, 15)
    assert store.complete(first, T0 + 1)
    assert store.fail(second, T0 + 1, settings, exit_code=1, error="boom") == "failed"
    third = store.claim(A, T0 + 2, 15)
    assert store.release(third, T0 + 3, reason="cold stop")
    # A batch: held results and the next claim in one transaction, as a worker sends them;
    # one of them no longer ours (given back), so its held result is refused, not counted.
    _, batch = store.record_batch([], A, T0 + 4, 15, claim=4)
    assert store.unclaim(batch[1], T0 + 4)
    records = [lambda job=job: store.complete(job, T0 + 5) for job in batch]
    results, _ = store.record_batch(records, A, T0 + 5, 15, claim=1)
    assert results == [True, False, True, True]
    lost = store.claim(B, T0 + 6, 15)
    # Its worker is gone, and the job A claimed with the batch is past its lease: crashed.
    assert len(store.recover_lost(T0 + 100, settings, [B.id])) == 2
    assert store.attempts(lost.id)[-1]["outcome"] == "crashed"

    assert totals(store) == history(store)
    assert sum(totals(store).values()) == 8  # 1 + 1 + 1 + 3 of the batch + 2 crashed
    assert not store.complete(first, T0 + 7)  # no longer its job: nothing recorded, none counted
    assert totals(store) == history(store)


@pytest.mark.parametrize("in_batch", [False, True], ids=["alone", "batch-last"])
def test_a_run_recorded_already_is_not_counted_again(store, in_batch):
    """Counted only when its attempt row was inserted: a run whose row is there already (as
    after an import) adds to neither count, on its own or as a batch's last result."""
    store.enqueue([NewJob(id="j", command="true")], T0)
    job = store.claim(A, T0, 15)
    with store.db.transaction():
        store.db.execute("import_attempt", {
            "job_id": "j", "run": job.runs, "worker_id": A.id, "host": A.host,
            "started_at": T0, "finished_at": T0 + 1, "outcome": "completed", "exit_code": 0,
            "error": None, "output_bytes": 0})
    if in_batch:
        [recorded], _ = store.record_batch([lambda: store.complete(job, T0 + 1)], A, T0 + 1,
                                           15, claim=0)
        assert recorded
    else:
        assert store.complete(job, T0 + 1)
    assert totals(store) == {}
    assert store.finished_by_minute(minute_of(T0)) == {}


def test_a_purge_of_old_history_leaves_the_counters_where_they_were(store):
    """A Prometheus counter that drops reads as a reset, and rate() then counts the whole new
    value as fresh runs: the counters are runs ever recorded, not the history kept."""
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(4)], T0)
    for _ in range(4):
        store.complete(store.claim(A, T0, 15), T0 + 1)
    assert store.purge(["completed"], before=T0 + 2) == 4
    assert history(store) == {}
    assert totals(store) == {("default", "completed"): 4}
    store.enqueue([NewJob(id="k", command="true")], T0 + 3)
    store.complete(store.claim(A, T0 + 3, 15), T0 + 4)
    assert totals(store) == {("default", "completed"): 5}


def test_a_version_7_queue_starts_its_counters_from_its_history(db):
    # History the old version recorded: plain rows in attempts, no counters.
    store = open_store_of_version(db, 7)
    store.enqueue([NewJob(id=f"j{i}", command="true", queue="q" if i else "default",
                          run_at=T0 + 10**6)  # not due: the claim below takes the new job
                   for i in range(3)], T0)
    with store.db.transaction():
        for i in range(3):
            store.db.execute("import_attempt", {
                "job_id": f"j{i}", "run": 1, "worker_id": A.id, "host": A.host,
                "started_at": T0, "finished_at": T0 + 1, "outcome": "completed",
                "exit_code": 0, "error": None, "output_bytes": 0})
    assert sum(history(store).values()) == 3
    store.close()

    store = open_store(db)
    try:
        assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        assert totals(store) == {("default", "completed"): 1, ("q", "completed"): 2}
        store.enqueue([NewJob(id="new", command="true", queue="q")], T0 + 2)
        store.complete(store.claim(A, T0 + 2, 15), T0 + 3)
        assert totals(store) == history(store) == {("default", "completed"): 1,
                                                   ("q", "completed"): 3}
    finally:
        store.close()


def test_the_counters_read_no_history_row_on_sqlite(sqlite_database):
    store = open_store(sqlite_database)
    try:
        plan = [row[3] for row in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + store.db.queries["attempt_totals"])]
    finally:
        store.close()
    assert plan and all(not re.search(r"\battempts\b", step) for step in plan), plan


def test_the_counters_read_no_history_row_on_postgres(pg_database):
    import psycopg

    open_store(pg_database).close()
    with psycopg.connect(pg_database) as conn:
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + sql.load("postgres")["attempt_totals"]))
    assert "attempt_counts" in plan and not re.search(r"\battempts\b", plan), plan
