"""The JobStore contract, run on every backend (the `db` fixture: SQLite, then PostgreSQL).

The job rules are written once in JobStore; these tests pin down that each dialect's SQL gives
them the same meaning: claim order, fencing by lease token, retries, the DLQ, config, workers.
"""

from __future__ import annotations

import time

import pytest

from queuectl.config import Settings
from queuectl.errors import InputError, JobNotFound
from queuectl.models import NewJob
from queuectl.store import JobStore, WorkerIdentity, open_store
from queuectl.store.jobstore import SCHEMA_VERSION

T0 = 1_800_000_000.0  # a fixed clock: the store takes `now` from its caller


@pytest.fixture
def store(db):
    s = open_store(db)
    yield s
    s.close()


def worker(name: str = "w1", host: str = "host-a") -> WorkerIdentity:
    return WorkerIdentity(id=name, host=host, pid=1000)


def add(store: JobStore, *jobs: NewJob, now: float = T0) -> list[str]:
    return [e.id for e in store.enqueue(list(jobs), now)]


def job(job_id: str | None = None, command: str = "true", **kw) -> NewJob:
    return NewJob(id=job_id, command=command, **kw)


def test_migrate_is_idempotent_and_records_the_version(db):
    for _ in range(2):
        s = open_store(db)
        s.migrate()
        assert s.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        s.close()


def test_enqueue_get_list_counts(store):
    ids = add(store, job("a", "echo a", env={"X": "1"}, timeout=5.0, cwd="/tmp"), job())
    assert ids[0] == "a" and len(ids[1]) == 12
    a = store.get("a")
    assert (a.state, a.attempts, a.max_retries, a.env, a.timeout, a.cwd) == \
        ("pending", 0, 3, {"X": "1"}, 5.0, "/tmp")
    assert isinstance(a.created_at, float) and a.created_at == T0
    assert [j.id for j in store.list()] == [ids[1], "a"]  # newest first
    assert [j.id for j in store.list("pending", limit=1)] == [ids[1]]
    assert store.counts()["pending"] == 2 and store.counts()["dead"] == 0
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_a_batch_with_a_duplicate_id_writes_nothing(store):
    add(store, job("a"))
    with pytest.raises(InputError, match="already exists"):
        add(store, job("b"), job("a"))
    assert [j.id for j in store.list()] == ["a"]


def test_claim_order_priority_then_due_time_then_fifo(store):
    add(store, job("late", run_at=T0 + 100), job("first"), job("second"),
        job("urgent", priority=5), job("early", run_at=T0 - 10))
    claimed = []
    while (j := store.claim(worker(), T0, 30)) is not None:
        claimed.append(j.id)
    assert claimed == ["urgent", "early", "first", "second"]
    assert store.claim(worker(), T0 + 100, 30).id == "late"


def test_claim_sets_the_lease_and_complete_records_an_attempt(store):
    add(store, job("a"))
    j = store.claim(worker("w1", "h1"), T0 + 1, 30)
    assert (j.state, j.worker_id, j.host, j.runs, j.lease_expires_at) == \
        ("processing", "w1", "h1", 1, T0 + 31)
    assert store.set_process(j, 4242, "boot:1")
    assert store.get("a").pgid == 4242
    assert store.renew_lease(j, T0 + 10, 30)
    assert store.get("a").lease_expires_at == T0 + 40
    assert store.complete(j, T0 + 12)
    done = store.get("a")
    assert (done.state, done.attempts, done.finished_at, done.worker_id) == \
        ("completed", 1, T0 + 12, None)
    [attempt] = store.attempts("a")
    assert (attempt["run"], attempt["outcome"], attempt["host"], attempt["started_at"]) == \
        (1, "completed", "h1", T0 + 1)


def test_failures_back_off_then_die_into_the_dlq_and_can_be_retried(store):
    settings = Settings({"backoff-base": "2"})
    add(store, job("a", max_retries=1))
    j = store.claim(worker(), T0, 30)
    assert store.fail(j, T0, settings, 3, "boom") == "failed"
    assert store.get("a").run_at == T0 + 2
    assert store.claim(worker(), T0 + 1.9, 30) is None  # not before its backoff
    j = store.claim(worker(), T0 + 2, 30)
    assert store.fail(j, T0 + 3, settings, 3, "boom again") == "dead"
    [dead] = store.dlq_list()
    assert (dead["id"], dead["attempts"], dead["last_error"], dead["died_at"]) == \
        ("a", 2, "boom again", T0 + 3)
    assert [a["outcome"] for a in store.attempts("a")] == ["failed", "failed"]

    add(store, job("b"))
    with pytest.raises(InputError, match="not dead"):
        store.dlq_retry(["a", "b"], T0 + 4)  # all or nothing
    assert store.get("a").state == "dead"
    assert store.dlq_retry(["a"], T0 + 4) == ["a"]
    again = store.get("a")
    assert (again.state, again.attempts, again.finished_at) == ("pending", 0, None)
    assert len(store.attempts("a")) == 2  # history kept


def test_dlq_retry_all_and_purge(store):
    settings = Settings()
    add(store, job("a", max_retries=0), job("b", max_retries=0), job("c"))
    for _ in range(2):
        j = store.claim(worker(), T0, 30)
        store.fail(j, T0, settings, 1, "x")
    assert store.counts()["dead"] == 2
    assert store.dlq_retry_all(T0) == 2
    for _ in range(3):
        j = store.claim(worker(), T0, 30)
        store.fail(j, T0, settings, 1, "x")
    assert store.dlq_purge() == 2
    assert [j.id for j in store.list()] == ["c"]
    assert store.attempts("a") == []


def test_a_worker_that_lost_its_lease_changes_nothing(store):
    settings = Settings({"lease-seconds": "10", "max-crashes": "2"})
    add(store, job("a"))
    old = store.claim(worker("w1"), T0, 10)
    recovered = store.recover_lost(T0 + 11, settings)  # lease expired: taken back
    assert [(j.id, state) for j, state in recovered] == [("a", "pending")]
    assert not store.complete(old, T0 + 12)
    assert not store.renew_lease(old, T0 + 12, 10)
    assert store.fail(old, T0 + 12, settings, 1, "late") is None
    assert store.get("a").state == "pending" and store.get("a").crashes == 1
    new = store.claim(worker("w2"), T0 + 12, 10)
    assert new.runs == 2 and new.attempts == 0
    # a second crash reaches max-crashes: dead, not retried forever
    recovered = store.recover_lost(T0 + 30, settings)
    assert [state for _, state in recovered] == ["dead"]
    assert [a["outcome"] for a in store.attempts("a")] == ["crashed", "crashed"]


def test_jobs_of_a_dead_worker_are_recovered_before_their_lease_ends(store):
    add(store, job("a"))
    store.claim(worker("w1"), T0, 60)
    stopped = []
    recovered = store.recover_lost(T0 + 1, Settings(), dead_worker_ids=["w1"],
                                   stop_leftovers=lambda j: stopped.append(j.id))
    assert [j.id for j, _ in recovered] == ["a"] and stopped == ["a"]
    assert store.get("a").state == "pending"


def test_release_puts_a_job_back_without_charging_it(store):
    add(store, job("a"))
    j = store.claim(worker(), T0, 30)
    assert store.release(j, T0 + 1, "cold stop")
    back = store.get("a")
    assert (back.state, back.attempts, back.runs) == ("pending", 0, 1)


def test_config_values_round_trip(store):
    assert store.config_set("backoff-base", "3") == 3.0
    assert store.settings()["backoff-base"] == 3.0
    with pytest.raises(InputError):
        store.config_set("heartbeat-seconds", "60")  # more than half the lease
    store.config_unset("backoff-base")
    assert store.settings()["backoff-base"] == 2.0


def test_worker_registry_and_stop_requests(store):
    store.register_worker(worker("w1"), T0)
    store.register_worker(worker("w2", "host-b"), T0 - 100)
    add(store, job("a"))
    store.claim(worker("w1"), T0, 30)
    assert [(w["id"], w["current_job"]) for w in store.live_workers(T0 - 10)] == [("w1", "a")]
    assert [w["id"] for w in store.workers_on_host("host-b")] == ["w2"]
    assert store.stop_requested("w1") is False
    assert store.request_stop(T0 - 10) == 1
    assert store.stop_requested("w1") is True and store.stop_requested("w2") is False
    store.worker_heartbeat("w2", T0)
    assert store.forget_dead_workers(T0 - 10) == 0
    store.unregister_worker("w1")
    assert store.stop_requested("w1") is None


def test_changed_sees_a_commit_from_another_connection(db):
    watcher, other = open_store(db), open_store(db)
    try:
        watcher.db.changed()  # the first call starts watching (and may say True)
        add(other, job("a"))
        deadline = time.monotonic() + 2
        while not watcher.db.changed():
            assert time.monotonic() < deadline, "changed() never saw the other commit"
            time.sleep(0.01)
    finally:
        watcher.close()
        other.close()
