"""A worker running real short commands in batches (DECISIONS.md 30, 31), in this process, on
each backend: how many jobs each transaction claims, what is held and what is recorded at
once."""

from __future__ import annotations

import os

import pytest

from queuectl import worker as worker_module
from queuectl.models import parse_job_spec
from queuectl.store import open_store
from queuectl.worker import BATCH_MOST, Worker, new_identity

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(db):
    s = open_store(db, durable=False)
    yield s
    s.close()


def enqueue(store, *specs: dict) -> list[str]:
    import time

    return [r.id for r in store.enqueue([parse_job_spec(s) for s in specs], time.time())]


def spy_on_batches(store) -> list[dict]:
    """Each record_batch call's size: results recorded, jobs claimed, jobs given back."""
    calls: list[dict] = []
    real = store.record_batch

    def record_batch(records, worker, now, lease_seconds, claim=1, give_back=(), **kwargs):
        give_back = list(give_back)
        results, claimed = real(records, worker, now, lease_seconds, claim=claim,
                                give_back=give_back, **kwargs)
        calls.append({"recorded": len(records), "asked": claim, "claimed": len(claimed),
                      "given_back": len(give_back)})
        return results, claimed

    store.record_batch = record_batch
    return calls


def run_burst(store) -> Worker:
    worker = Worker(store, new_identity(), verbose=False)
    worker.run(burst=True)
    return worker


def journals_of(database: str) -> list[str]:
    """The journal files of a SQLite queue, or the workers with lines in a PostgreSQL one's
    journal table."""
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT worker_id FROM worker_journal")]
    folder = os.path.realpath(database) + "-journals"
    return os.listdir(folder) if os.path.isdir(folder) else []


def test_short_jobs_are_claimed_and_recorded_many_to_a_transaction(store, db):
    ids = enqueue(store, *[{"command": "true"} for _ in range(60)])
    calls = spy_on_batches(store)
    worker = run_burst(store)
    assert worker.jobs_done == 60
    for job_id in ids:
        job = store.get(job_id)
        assert (job.state, job.attempts, job.runs, job.crashes) == ("completed", 1, 1, 0)
    assert [c["asked"] for c in calls[:4]] == [2, 4, 8, 16][: len(calls[:4])]
    assert max(c["claimed"] for c in calls) == BATCH_MOST
    assert sum(c["recorded"] for c in calls) == 60
    assert len(calls) <= 60 // 4  # one commit per job would be 60
    assert journals_of(db) == []  # removed on a clean exit


def test_a_held_result_keeps_what_the_job_printed_and_when_it_ran(store):
    ids = enqueue(store, *[{"command": f"echo out-{i}; echo err-{i} >&2"} for i in range(12)])
    run_burst(store)
    for i, job_id in enumerate(ids):
        assert b"".join(data for _, data in store.output(job_id, 1)) == (
            f"out-{i}\nerr-{i}\n".encode())
        [attempt] = store.attempts(job_id)
        assert attempt["outcome"] == "completed"
        assert attempt["started_at"] <= attempt["finished_at"]


def test_a_failure_is_recorded_at_once_and_ends_the_batch_s_growth(store):
    ids = enqueue(store, *[{"command": "true"} for _ in range(10)],
                  {"id": "fails", "command": "exit 3", "max_retries": 0},
                  *[{"command": "true"} for _ in range(10)])
    calls = spy_on_batches(store)
    run_burst(store)
    assert store.get("fails").state == "dead"
    assert {store.get(j).state for j in ids if j != "fails"} == {"completed"}
    # The claim after the failure's commit takes one job again.
    failure_commit = next(i for i, c in enumerate(calls) if c["asked"] == 0)
    later = [c["asked"] for c in calls[failure_commit + 1:] if c["asked"]]
    assert later[0] in (1, 2)


def test_jobs_that_outlast_a_batch_s_time_give_the_rest_back(store, monkeypatch):
    monkeypatch.setattr(worker_module, "BATCH_SECONDS", 0.3)
    ids = enqueue(store, *[{"command": "true"} for _ in range(3)],
                  *[{"command": "sleep 0.15"} for _ in range(12)])
    calls = spy_on_batches(store)
    run_burst(store)
    assert {store.get(j).state for j in ids} == {"completed"}
    assert {store.get(j).runs for j in ids} == {1}  # given back uncharged, run once
    assert sum(c["given_back"] for c in calls) > 0


def test_a_burst_worker_makes_no_change_watch(sqlite_database):
    """It never waits for work, and closing a watch costs an RCU grace period at exit."""
    store = open_store(sqlite_database, durable=False)
    enqueue(store, {"command": "true"})
    worker = Worker(store, new_identity(), verbose=False)
    worker.run(burst=True)
    assert worker.jobs_done == 1
    assert store.db._watch_fd is None
    waiting = Worker(store, new_identity(), verbose=False)  # not burst: watches before a claim
    assert waiting.run_once(0.0) is False
    assert store.db._watch_fd is not None
    store.close()


def test_worker_stop_takes_effect_after_the_current_job_of_a_batch(store, db):
    ids = enqueue(store, *[{"command": "true"} for _ in range(3)],
                  *[{"command": "sleep 0.06"} for _ in range(20)])
    other = open_store(db)
    asked: list[int] = []  # jobs done when the stop was asked
    real = store.record_batch
    worker = Worker(store, new_identity(), verbose=False)

    def record_batch(records, *args, **kwargs):
        results, claimed = real(records, *args, **kwargs)
        if len(claimed) >= 4 and not asked:  # a batch is claimed: ask for the stop now
            other.request_stop(alive_since=0.0)
            asked.append(worker.jobs_done)
        return results, claimed

    store.record_batch = record_batch
    try:
        worker.run()  # not burst: only the stop ends it
    finally:
        other.close()
    assert asked
    # The job that started with the batch's claim, and at most one more that started before
    # the flag was read again (AHEAD_STOP_CHECK_SECONDS); the rest was given back.
    assert worker.jobs_done - asked[0] <= 2
    assert sum(store.get(j).state == "pending" for j in ids) == len(ids) - worker.jobs_done
    assert {store.get(j).runs for j in ids if store.get(j).state == "pending"} == {0}


def test_a_start_the_journal_cannot_note_is_given_back_not_run(store, db, tmp_path):
    """A journal write that fails (a full disk; PostgreSQL gone a moment) ends the batch: what
    is held is recorded, the job whose start could not be noted goes back unstarted with the
    rest, and every job still runs exactly once."""
    ran = tmp_path / "ran"
    ids = enqueue(store, *[{"command": f"echo {i} >> {ran}"} for i in range(20)])
    worker = Worker(store, new_identity(), verbose=False)
    worker.use_journal()
    journal_type = type(worker._journal)
    real_started = journal_type.started
    failures: list[str] = []

    def started(self, job, at):
        if len(worker._held) >= 3 and not failures:  # mid-batch, results held
            failures.append(job.id)
            raise OSError(28, "No space left on device")
        return real_started(self, job, at)

    given_back: list[str] = []
    real_record_batch = store.record_batch

    def record_batch(records, *args, give_back=(), **kwargs):
        given_back.extend(job.id for job in give_back)
        return real_record_batch(records, *args, give_back=give_back, **kwargs)

    store.record_batch = record_batch
    journal_type.started = started
    try:
        worker.run(burst=True)
    finally:
        journal_type.started = real_started
    assert failures and failures[0] in given_back  # not run on an old claim
    assert sorted(ran.read_text().split(), key=int) == [str(i) for i in range(20)]
    assert {store.get(j).state for j in ids} == {"completed"}
    assert {store.get(j).runs for j in ids} == {1}  # the given-back job too: claimed anew
    assert worker.jobs_done == 20
    # Batches stay off on SQLite (a full disk); PostgreSQL journals again once the database
    # answers a maintenance pass.
    assert worker._journal is None
    worker.maintain(0.0, force=True)
    assert (worker._journal is not None) == db.startswith("postgresql://")
