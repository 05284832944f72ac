"""The JobStore contract, run unchanged against every backend (the `db` fixture).

Only the JobStore's public verbs are used, never SQL, so a new backend passes these tests or
is wrong. Time is passed in explicitly: no test here waits on the wall clock.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuectl.config import KEYS
from queuectl.errors import InputError, JobNotFound
from queuectl.models import STATES, NewJob, parse_job_spec
from queuectl.store.jobstore import WORKER_CLAIMING, WORKER_PAUSED, WORKER_STOPPING
from queuectl.timeutil import iso

from .common import T0, A, B

LEASE = 15.0  # the default lease-seconds


def new(job_id: str | None = None, command: str = "true", **fields) -> NewJob:
    return NewJob(id=job_id, command=command, **fields)


def ids(results) -> list[str]:
    return [r.id for r in results]


def claim(store, now: float, worker=A):
    return store.claim(worker, now, store.settings()["lease-seconds"])


def stale(job):
    """The same claim, as a worker holding an outdated token would have it."""
    return job.replace(lease_token="0123456789abcdef")


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_stores_every_field(store):
    results = store.enqueue([
        new("full", "make test", max_retries=5, priority=7, queue="builds", delay=30.0,
            timeout=60.0, cwd="/srv", env={"CI": "1"}, unique_key="k1"),
    ], T0)
    assert [(r.id, r.duplicate) for r in results] == [("full", False)]
    job = store.get("full")
    assert (job.command, job.state, job.attempts, job.max_retries) == ("make test", "pending", 0, 5)
    assert (job.created_at, job.updated_at, job.run_at) == (T0, T0, T0 + 30)
    assert (job.priority, job.queue, job.timeout, job.cwd) == (7, "builds", 60.0, "/srv")
    assert (job.env, job.unique_key) == ({"CI": "1"}, "k1")
    assert (job.runs, job.crashes, job.last_error, job.exit_code, job.finished_at) == (
        0, 0, None, None, None)
    assert (job.worker_id, job.lease_token, job.lease_expires_at, job.pgid) == (
        None, None, None, None)


def test_enqueue_defaults(store):
    [result] = store.enqueue([new()], T0)
    job = store.get(result.id)
    assert (job.max_retries, job.priority, job.queue, job.run_at, job.env) == (
        3, 0, "default", T0, {})


def test_default_max_retries_comes_from_config(store):
    store.config_set("max-retries", "5")
    [result] = store.enqueue([new()], T0)
    assert store.get(result.id).max_retries == 5


def test_run_at_wins_over_delay(store):
    store.enqueue([new("a", run_at=T0 + 100, delay=5.0)], T0)
    assert store.get("a").run_at == T0 + 100


def test_generated_ids_are_distinct_and_valid(store):
    results = store.enqueue([new() for _ in range(200)], T0)
    generated = ids(results)
    assert len(set(generated)) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]*", i) for i in generated)
    assert store.counts()["pending"] == 200


def test_a_batch_is_inserted_in_order(store):
    assert ids(store.enqueue([new("a"), new("b"), new("c")], T0)) == ["a", "b", "c"]
    assert [j.id for j in store.list()] == ["c", "b", "a"]  # newest first


def test_a_batch_stores_awkward_text_exactly(store):
    """A batch goes through PostgreSQL's COPY, whose text format escapes tabs, line breaks,
    backslashes and its NULL marker `\\N`: each must come back as given, None as None."""
    awkward = ["tab\there", "two\nlines", "cr\r", "back\\slash", "\\N", "N\\", "",
               "quote ' \" $x", "ünïcödé ✓"]
    specs = [NewJob(id=f"j{i}", command=f"echo {text!r} {text}", cwd=f"/tmp/{text}",
                    env={"V": text, text or "E": "x"}, timeout=None)
             for i, text in enumerate(awkward)]
    store.enqueue(specs, T0)
    for spec in specs:
        job = store.get(spec.id)
        assert (job.command, job.cwd, job.env, job.timeout) == (
            spec.command, spec.cwd, spec.env, None)


def test_duplicate_id_within_a_batch_inserts_nothing(store):
    with pytest.raises(InputError, match="'x' already exists"):
        store.enqueue([new("first"), new("x"), new("x"), new("last")], T0)
    assert store.list() == []
    assert sum(store.counts().values()) == 0


def test_duplicate_of_an_existing_id_inserts_nothing(store):
    store.enqueue([new("x")], T0)
    with pytest.raises(InputError, match="'x' already exists"):
        store.enqueue([new("fresh"), new("x")], T0 + 1)
    with pytest.raises(JobNotFound):
        store.get("fresh")
    assert [j.id for j in store.list()] == ["x"]


def test_the_store_is_usable_after_a_refused_batch(store):
    with pytest.raises(InputError):
        store.enqueue([new("x"), new("x")], T0)
    assert ids(store.enqueue([new("x")], T0)) == ["x"]


def test_unique_key_while_live_returns_the_existing_job(store):
    [first] = store.enqueue([new(unique_key="nightly")], T0)
    [second] = store.enqueue([new(unique_key="nightly")], T0 + 1)
    assert (second.id, second.duplicate) == (first.id, True)
    assert store.counts()["pending"] == 1


def test_unique_key_is_free_again_once_the_job_is_finished(store):
    [first] = store.enqueue([new(unique_key="nightly")], T0)
    store.complete(claim(store, T0), T0 + 1)
    [second] = store.enqueue([new(unique_key="nightly")], T0 + 2)
    assert second.id != first.id
    assert store.get(second.id).state == "pending"


# -- claim ------------------------------------------------------------------------------------


def test_claim_on_an_empty_queue(store):
    assert claim(store, T0) is None


def test_claim_order_is_priority_then_run_at_then_fifo(store):
    store.enqueue([
        new("low-oldest", priority=0, run_at=T0 - 100),
        new("high-newer", priority=5, run_at=T0 - 1),
        new("mid-first", priority=1, run_at=T0 - 10),
        new("high-older", priority=5, run_at=T0 - 50),
        new("mid-second", priority=1, run_at=T0 - 10),
        new("negative", priority=-3, run_at=T0 - 1000),
        new("future-top", priority=9, run_at=T0 + 60),
    ], T0 - 2000)
    order = []
    while (job := claim(store, T0)) is not None:
        order.append(job.id)
    assert order == ["high-older", "high-newer", "mid-first", "mid-second", "low-oldest",
                     "negative"]
    assert claim(store, T0 + 60).id == "future-top"


def test_a_job_is_not_claimed_before_its_run_at(store):
    store.enqueue([new("later", delay=10.0)], T0)
    assert claim(store, T0) is None
    assert claim(store, T0 + 9.999) is None
    assert store.get("later").state == "pending"
    assert claim(store, T0 + 10).id == "later"  # due exactly at run_at


def test_claim_takes_the_lease(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0 + 1)
    assert (job.state, job.runs, job.attempts) == ("processing", 1, 0)
    assert (job.worker_id, job.host) == (A.id, A.host)
    assert job.lease_token and len(job.lease_token) >= 16
    assert (job.lease_expires_at, job.started_at, job.updated_at) == (T0 + 1 + LEASE, T0 + 1,
                                                                      T0 + 1)
    stored = store.get("a")
    assert (stored.state, stored.lease_token, stored.lease_expires_at) == (
        "processing", job.lease_token, T0 + 1 + LEASE)


def test_claim_uses_the_lease_it_is_given(store):
    store.enqueue([new("a")], T0)
    assert store.claim(A, T0, 42.5).lease_expires_at == T0 + 42.5


def test_a_claimed_job_is_not_claimed_again(store):
    store.enqueue([new("a"), new("b")], T0)
    first, second = claim(store, T0), claim(store, T0, B)
    assert {first.id, second.id} == {"a", "b"}
    assert first.lease_token != second.lease_token
    assert claim(store, T0 + 1) is None


# -- complete, fail, release: fenced by the claim's token ---------------------------------


def test_complete(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    assert store.complete(job, T0 + 3) is True
    done = store.get("a")
    assert (done.state, done.attempts, done.exit_code, done.finished_at, done.updated_at) == (
        "completed", 1, 0, T0 + 3, T0 + 3)
    assert (done.worker_id, done.lease_token, done.lease_expires_at) == (None, None, None)
    [history] = store.attempts("a")
    assert (history["run"], history["outcome"], history["exit_code"]) == (1, "completed", 0)
    assert (history["started_at"], history["finished_at"], history["worker_id"]) == (
        T0, T0 + 3, A.id)


def test_stale_token_changes_nothing(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    old = stale(job)
    settings_ = store.settings()
    assert store.complete(old, T0 + 1) is False
    assert store.fail(old, T0 + 1, settings_, 1, "boom") is None
    assert store.release(old, T0 + 1, "cold stop") is False
    assert store.renew_lease(old, T0 + 1, LEASE) is False
    assert store.set_process(old, 4242, "stamp") is False
    after = store.get("a")
    assert (after.state, after.attempts, after.lease_token, after.pgid) == (
        "processing", 0, job.lease_token, None)
    assert after.lease_expires_at == T0 + LEASE
    assert store.attempts("a") == []
    assert store.complete(job, T0 + 2) is True  # the real owner still can


def test_finishing_twice_does_nothing_the_second_time(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    assert store.complete(job, T0 + 1) is True
    assert store.complete(job, T0 + 2) is False
    assert store.fail(job, T0 + 2, store.settings(), 1, "x") is None
    assert store.get("a").finished_at == T0 + 1
    assert len(store.attempts("a")) == 1


def test_renew_and_set_process(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    assert store.renew_lease(job, T0 + 5, LEASE) is True
    assert store.set_process(job, 4242, "boot:123") is True
    stored = store.get("a")
    assert (stored.lease_expires_at, stored.pgid, stored.pgid_started) == (
        T0 + 5 + LEASE, 4242, "boot:123")


def test_fail_retries_with_backoff_then_dies(store):
    store.config_set("backoff-base", "2")
    store.enqueue([new("f", max_retries=2)], T0)
    settings_ = store.settings()

    job = claim(store, T0)
    assert store.fail(job, T0 + 1, settings_, 3, "exit code 3") == "failed"
    failed = store.get("f")
    assert (failed.state, failed.attempts, failed.run_at) == ("failed", 1, T0 + 1 + 2)
    assert (failed.exit_code, failed.last_error, failed.finished_at) == (3, "exit code 3", None)
    assert failed.lease_token is None
    assert claim(store, T0 + 2.999) is None

    job = claim(store, T0 + 3)
    assert (job.id, job.runs, job.attempts) == ("f", 2, 1)
    assert store.fail(job, T0 + 4, settings_, 3, "exit code 3") == "failed"
    assert (store.get("f").attempts, store.get("f").run_at) == (2, T0 + 4 + 4)
    assert claim(store, T0 + 7.999) is None

    job = claim(store, T0 + 8)
    assert store.fail(job, T0 + 9, settings_, 3, "exit code 3") == "dead"
    dead = store.get("f")
    assert (dead.state, dead.attempts, dead.runs, dead.finished_at) == ("dead", 3, 3, T0 + 9)
    assert claim(store, T0 + 10_000) is None
    assert [d["id"] for d in store.dlq_list()] == ["f"]
    assert [(a["run"], a["outcome"]) for a in store.attempts("f")] == [
        (1, "failed"), (2, "failed"), (3, "failed")]


def test_backoff_base_one_and_a_half(store):
    store.config_set("backoff-base", "1.5")
    store.enqueue([new("f", max_retries=3)], T0)
    for attempt, at in ((1, T0), (2, T0 + 10), (3, T0 + 20)):
        job = claim(store, at)
        assert store.fail(job, at, store.settings(), 1, "no") == "failed"
        assert store.get("f").run_at == pytest.approx(at + 1.5 ** attempt)


def test_max_retries_zero_dies_on_the_first_failure(store):
    store.enqueue([new("f", max_retries=0)], T0)
    assert store.fail(claim(store, T0), T0, store.settings(), 1, "no") == "dead"


def test_fail_records_the_outcome_given(store):
    store.enqueue([new("t")], T0)
    store.fail(claim(store, T0), T0 + 1, store.settings(), 124, "timed out after 1s",
               outcome="timeout")
    [history] = store.attempts("t")
    assert (history["outcome"], history["exit_code"], history["error"]) == (
        "timeout", 124, "timed out after 1s")


def test_release_puts_the_job_back_without_charging(store):
    store.enqueue([new("r")], T0)
    job = claim(store, T0)
    assert store.release(job, T0 + 5, "released by a cold stop") is True
    back = store.get("r")
    assert (back.state, back.attempts, back.runs, back.run_at) == ("pending", 0, 1, T0 + 5)
    assert back.lease_token is None
    assert [a["outcome"] for a in store.attempts("r")] == ["released"]
    again = claim(store, T0 + 5)
    assert (again.id, again.runs, again.attempts) == ("r", 2, 0)


# -- recovery of lost jobs ----------------------------------------------------------------


def test_nothing_is_recovered_while_the_lease_holds(store):
    store.enqueue([new("a")], T0)
    claim(store, T0)
    assert store.recover_lost(T0 + LEASE, store.settings()) == []  # expires strictly after
    assert store.get("a").state == "processing"


def test_an_expired_lease_is_recovered_without_charging(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    [(recovered, state)] = store.recover_lost(T0 + LEASE + 0.001, store.settings())
    assert (recovered.id, state) == ("a", "pending")
    back = store.get("a")
    assert (back.state, back.attempts, back.crashes, back.runs) == ("pending", 0, 1, 1)
    assert back.lease_token is None and back.worker_id is None
    assert "re-queued without charging" in back.last_error
    assert [a["outcome"] for a in store.attempts("a")] == ["crashed"]
    assert store.complete(job, T0 + LEASE + 1) is False  # the old owner is fenced out
    assert claim(store, T0 + LEASE + 1, B).id == "a"


def test_a_renewed_lease_is_not_recovered(store):
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    assert store.renew_lease(job, T0 + 10, LEASE)
    assert store.recover_lost(T0 + LEASE + 1, store.settings()) == []
    assert [j.id for j, _ in store.recover_lost(T0 + 10 + LEASE + 1, store.settings())] == ["a"]


def test_a_job_that_keeps_losing_its_worker_goes_dead(store):
    store.enqueue([new("crashy", max_retries=10)], T0)
    settings_ = store.settings()
    assert settings_["max-crashes"] == 3
    now, states = T0, []
    for _ in range(3):
        claim(store, now)
        now += LEASE + 1
        [(_, state)] = store.recover_lost(now, settings_)
        states.append(state)
    assert states == ["pending", "pending", "dead"]
    dead = store.get("crashy")
    assert (dead.state, dead.crashes, dead.attempts, dead.runs) == ("dead", 3, 0, 3)
    assert dead.finished_at == now
    assert "max-crashes" in dead.last_error
    [entry] = store.dlq_list()
    assert (entry["id"], entry["crashes"]) == ("crashy", 3)


def test_max_crashes_is_read_from_settings(store):
    store.config_set("max-crashes", "1")
    store.enqueue([new("a")], T0)
    claim(store, T0)
    assert [s for _, s in store.recover_lost(T0 + LEASE + 1, store.settings())] == ["dead"]


def test_jobs_of_a_dead_worker_are_recovered_before_their_lease_ends(store):
    store.enqueue([new("of-a"), new("of-b")], T0)
    claim(store, T0, A)
    claim(store, T0, B)
    recovered = store.recover_lost(T0 + 1, store.settings(), dead_worker_ids=[A.id])
    assert [(j.id, s) for j, s in recovered] == [("of-a", "pending")]
    assert store.get("of-b").state == "processing"


def test_take_over_is_fenced_before_the_leftovers_are_stopped(store):
    """While the recovering worker kills the old run, the old owner can change nothing and
    nobody can claim the job: a second copy never starts while the first still runs."""
    store.enqueue([new("a")], T0)
    job = claim(store, T0)
    store.set_process(job, 4242, "boot:1")
    seen = []

    def stop_leftovers(lost):
        seen.append((lost.id, lost.pgid, lost.pgid_started))
        assert store.complete(job, T0 + 20) is False
        assert store.renew_lease(job, T0 + 20, LEASE) is False
        assert store.get("a").state == "processing"
        assert claim(store, T0 + 20, B) is None

    recovered = store.recover_lost(T0 + LEASE + 1, store.settings(),
                                   stop_leftovers=stop_leftovers)
    assert seen == [("a", 4242, "boot:1")]
    assert [(j.id, s) for j, s in recovered] == [("a", "pending")]


def test_the_old_owner_stays_fenced_after_the_job_is_claimed_again(store):
    store.enqueue([new("a")], T0)
    old = claim(store, T0, A)
    store.recover_lost(T0 + LEASE + 1, store.settings())
    new_owner = claim(store, T0 + LEASE + 2, B)
    assert new_owner.runs == 2
    assert store.complete(old, T0 + LEASE + 3) is False
    assert store.fail(old, T0 + LEASE + 3, store.settings(), 1, "late") is None
    assert store.get("a").worker_id == B.id
    assert store.complete(new_owner, T0 + LEASE + 4) is True
    assert [(a["run"], a["outcome"]) for a in store.attempts("a")] == [
        (1, "crashed"), (2, "completed")]


def test_a_lost_job_is_recovered_once_when_two_workers_look(store, db):
    from queuectl.store import open_store

    store.enqueue([new("a")], T0)
    claim(store, T0)
    other = open_store(db)
    try:
        first = store.recover_lost(T0 + LEASE + 1, store.settings())
        second = other.recover_lost(T0 + LEASE + 1, other.settings())
    finally:
        other.close()
    assert len(first) + len(second) == 1
    assert store.get("a").crashes == 1


# -- dead letter queue --------------------------------------------------------------------


def kill(store, job_id: str, now: float) -> None:
    """Make one job dead by failing it with no retries left."""
    store.enqueue([new(job_id, max_retries=0)], now)
    job = store.claim(A, now, LEASE)
    assert job.id == job_id
    assert store.fail(job, now, store.settings(), 9, "it broke") == "dead"


def test_dlq_retry_gives_a_fresh_budget_and_keeps_history(store):
    kill(store, "d", T0)
    assert store.dlq_retry(["d"], T0 + 100) == ["d"]
    back = store.get("d")
    assert (back.state, back.attempts, back.crashes, back.run_at, back.finished_at) == (
        "pending", 0, 0, T0 + 100, None)
    assert back.max_retries == 0
    assert len(store.attempts("d")) == 1
    assert store.dlq_list() == []
    assert claim(store, T0 + 100).id == "d"


def test_dlq_retry_is_all_or_nothing(store):
    kill(store, "d1", T0)
    kill(store, "d2", T0 + 1)
    store.enqueue([new("p")], T0 + 2)
    with pytest.raises(InputError, match="'p' is pending, not dead"):
        store.dlq_retry(["d1", "p", "d2"], T0 + 3)
    with pytest.raises(JobNotFound):
        store.dlq_retry(["d1", "no-such-job"], T0 + 3)
    assert (store.get("d1").state, store.get("d2").state) == ("dead", "dead")
    assert store.counts()["dead"] == 2


def test_dlq_retry_all(store):
    kill(store, "d1", T0)
    kill(store, "d2", T0)
    store.enqueue([new("p")], T0)
    assert store.dlq_retry_all(T0 + 1) == 2
    assert store.counts()["pending"] == 3
    assert store.dlq_retry_all(T0 + 2) == 0


def test_dlq_list_is_newest_death_first(store):
    kill(store, "early", T0)
    kill(store, "late", T0 + 10)
    rows = store.dlq_list()
    assert [r["id"] for r in rows] == ["late", "early"]
    assert (rows[0]["attempts"], rows[0]["last_error"], rows[0]["exit_code"]) == (
        1, "it broke", 9)
    assert rows[0]["died_at"] == T0 + 10
    assert [r["id"] for r in store.dlq_list(limit=1)] == ["late"]


def test_dlq_purge_deletes_dead_jobs_and_their_history_only(store):
    kill(store, "d1", T0)
    kill(store, "d2", T0)
    store.enqueue([new("ok")], T0)
    store.complete(claim(store, T0), T0 + 1)
    assert store.dlq_purge() == 2
    for job_id in ("d1", "d2"):
        with pytest.raises(JobNotFound):
            store.get(job_id)
        assert store.attempts(job_id) == []
    assert store.get("ok").state == "completed"
    assert len(store.attempts("ok")) == 1
    assert store.dlq_purge() == 0


# -- config -------------------------------------------------------------------------------


def test_config_set_get_unset(store):
    assert store.config_set("lease-seconds", "30s") == 30.0
    assert store.settings()["lease-seconds"] == 30.0
    assert store.config_set("max-retries", "7") == 7
    assert store.settings()["max-retries"] == 7
    store.config_unset("lease-seconds")
    assert store.settings()["lease-seconds"] == 15.0
    assert store.settings()["max-retries"] == 7


@pytest.mark.parametrize("name, value", [("no-such-key", "1"), ("max-retries", "-1"),
                                         ("backoff-base", "fast"), ("lease-seconds", "1s")])
def test_config_set_refuses_bad_values_and_stores_nothing(store, name, value):
    with pytest.raises(InputError):
        store.config_set(name, value)
    assert dict(store.settings().items()) == {name: key.default for name, key in KEYS.items()}


def test_config_set_keeps_heartbeat_within_half_the_lease(store):
    with pytest.raises(InputError, match=r"heartbeat-seconds \(.*\) must be at most half"):
        store.config_set("heartbeat-seconds", "10")  # the lease is 15
    with pytest.raises(InputError, match=r"heartbeat-seconds \(.*\) must be at most half"):
        store.config_set("lease-seconds", "9")  # the heartbeat is 5
    store.config_set("lease-seconds", "30")
    store.config_set("heartbeat-seconds", "15")
    with pytest.raises(InputError):
        store.config_set("lease-seconds", "29")
    settings_ = store.settings()
    assert (settings_["lease-seconds"], settings_["heartbeat-seconds"]) == (30.0, 15.0)


def test_config_unset_of_an_unknown_key(store):
    with pytest.raises(InputError, match="unknown config key"):
        store.config_unset("nope")


# -- reading ------------------------------------------------------------------------------


def test_counts_name_every_state(store):
    assert store.counts() == {state: 0 for state in STATES}
    # Priorities fix the claim order: c, f, d, running; p1 and p2 stay pending.
    store.enqueue([new("p1", priority=0), new("p2", priority=0), new("c", priority=4),
                   new("f", max_retries=1, priority=3), new("d", max_retries=0, priority=2),
                   new("running", priority=1)], T0)
    store.complete(claim(store, T0), T0)
    assert store.fail(claim(store, T0), T0, store.settings(), 1, "no") == "failed"
    assert store.fail(claim(store, T0), T0, store.settings(), 1, "no") == "dead"
    assert claim(store, T0).id == "running"
    assert store.counts() == {"pending": 2, "processing": 1, "completed": 1, "failed": 1,
                              "dead": 1, "cancelled": 0}


def test_get_of_a_missing_job(store):
    with pytest.raises(JobNotFound, match="no job with id 'ghost'"):
        store.get("ghost")


def test_list_filters_and_limits(store):
    store.enqueue([new(f"j{i}") for i in range(5)], T0)
    store.complete(claim(store, T0), T0)
    assert [j.id for j in store.list(limit=2)] == ["j4", "j3"]
    assert [j.id for j in store.list("completed")] == ["j0"]
    assert [j.id for j in store.list("pending", limit=10)] == ["j4", "j3", "j2", "j1"]
    assert store.list("dead") == []


# -- workers ------------------------------------------------------------------------------


def test_worker_registry(store):
    store.register_worker(A, T0)
    store.register_worker(B, T0 - 100)  # last heard of long ago
    alive_since = T0 - LEASE
    [row] = store.live_workers(alive_since)
    assert (row["id"], row["host"], row["pid"], row["current_job"]) == (A.id, A.host, A.pid,
                                                                        None)
    assert (row["started_at"], row["heartbeat_at"], row["stop_requested"]) == (T0, T0, 0)

    store.enqueue([new("a")], T0)
    job = store.claim(A, T0 + 1, LEASE)
    store.worker_heartbeat(A.id, T0 + 2)
    [row] = store.live_workers(alive_since)
    assert (row["current_job"], row["job_started_at"], row["heartbeat_at"]) == (
        "a", T0 + 1, T0 + 2)
    assert job.worker_id == A.id

    store.worker_heartbeat(B.id, T0 + 3)  # B came back
    assert [w["id"] for w in store.live_workers(alive_since)] == [B.id, A.id]  # by start


def test_request_stop_reaches_live_workers_only(store):
    store.register_worker(A, T0)
    store.register_worker(B, T0 - 100)
    assert store.stop_requested(A.id) is False
    assert store.request_stop(T0 - LEASE) == 1
    assert store.stop_requested(A.id) is True
    assert store.stop_requested(B.id) is False
    assert store.stop_requested("never-registered") is None
    [row] = store.live_workers(T0 - LEASE)
    assert row["stop_requested"] == 1


def test_a_paused_worker_is_shown_paused_not_stopping_and_a_stop_outlasts_the_pause(store):
    store.register_worker(A, T0)
    store.mark_paused(A.id, True)
    assert store.stop_requested(A.id) is False  # a pause is not a stop
    assert [w["stop_requested"] for w in store.live_workers(T0 - LEASE)] == [WORKER_PAUSED]
    store.mark_paused(A.id, False)
    assert [w["stop_requested"] for w in store.live_workers(T0 - LEASE)] == [WORKER_CLAIMING]

    store.mark_paused(A.id, True)
    store.request_stop(T0 - LEASE)  # `worker stop` while paused
    store.mark_paused(A.id, False)  # and the resume that follows must not undo it
    assert store.stop_requested(A.id) is True
    store.mark_paused(A.id, True)  # nor does a pause hide it
    assert [w["stop_requested"] for w in store.live_workers(T0 - LEASE)] == [WORKER_STOPPING]


def test_unregister_and_forget_dead_workers(store):
    store.register_worker(A, T0)
    store.register_worker(B, T0 - 100)
    assert [w["id"] for w in store.workers_on_host("host-b")] == [B.id]
    assert store.forget_dead_workers(T0 - LEASE) == 1
    assert store.stop_requested(B.id) is None
    store.unregister_worker(A.id)
    assert store.live_workers(0) == []


# -- schema -------------------------------------------------------------------------------


def test_opening_twice_keeps_the_data(store, db):
    from queuectl.store import open_store

    store.enqueue([new("kept")], T0)
    again = open_store(db)
    try:
        assert again.get("kept").command == "true"
    finally:
        again.close()


# -- anything the validator accepts, the store holds and renders ------------------------

accepted_specs = st.fixed_dictionaries(
    {"command": st.text(min_size=1, max_size=30).filter(lambda c: c.strip() and "\0" not in c)},
    optional={
        "priority": st.integers(-(2**31), 2**31 - 1),
        "max_retries": st.integers(0, 2**31 - 1),
        "queue": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
        "delay": st.floats(0, 100 * 365 * 86400),
        "timeout": st.floats(0.001, 100 * 365 * 86400),
        "run_at": st.integers(0, 253402300799).map(iso),
        "env": st.dictionaries(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z"),
                               st.text(max_size=10).filter(lambda v: "\0" not in v),
                               max_size=3),
        "cwd": st.from_regex(r"\A/[a-z/]{0,20}\Z"),
    },
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=accepted_specs)
def test_whatever_validates_is_stored_and_rendered(store, spec):
    job = parse_job_spec(spec)
    [result] = store.enqueue([job], T0)
    stored = store.get(result.id)
    rendered = stored.to_dict()
    assert (stored.command, stored.priority, stored.env) == (job.command, job.priority, job.env)
    if job.max_retries is not None:
        assert stored.max_retries == job.max_retries
    for key in ("created_at", "updated_at", "next_run_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rendered[key]), key
    assert [j.id for j in store.list(limit=1)] == [result.id]


# -- one transaction per job: record the result and claim the next ------------------------------


def test_record_and_claim_records_the_result_and_claims_the_next_job(store):
    store.enqueue([new("a"), new("b")], T0)
    store.register_worker(A, T0)
    job = claim(store, T0)
    done, following = store.record_and_claim(lambda: store.complete(job, T0 + 1), A, T0 + 1,
                                             LEASE)
    assert done is True
    assert store.get("a").state == "completed"
    assert (following.id, following.state, following.worker_id, following.runs) == (
        "b", "processing", A.id, 1)
    assert following.lease_expires_at == T0 + 1 + LEASE


def test_record_and_claim_claims_nothing_once_the_worker_was_asked_to_stop(store):
    store.enqueue([new("a"), new("b")], T0)
    store.register_worker(A, T0)
    job = claim(store, T0)
    assert store.request_stop(alive_since=T0 - 1) == 1
    done, following = store.record_and_claim(lambda: store.complete(job, T0 + 1), A, T0 + 1,
                                             LEASE)
    assert (done, following) == (True, None)
    assert store.get("b").state == "pending"


def test_record_and_claim_still_claims_for_a_worker_without_a_row(store):
    """A worker forgotten as dead while frozen is alive again: it goes on (its claims are
    fenced by their tokens like any other) and registers again at its next maintenance. Only a
    stop request, which needs a row to be asked, keeps the chained claim from claiming."""
    store.enqueue([new("a"), new("b")], T0)
    job = claim(store, T0)
    done, following = store.record_and_claim(lambda: store.complete(job, T0 + 1), A, T0 + 1,
                                             LEASE)
    assert done is True and following.id == "b" and following.worker_id == A.id


def test_a_late_result_is_refused_but_the_next_job_is_still_claimed(store):
    store.enqueue([new("a"), new("b")], T0)
    store.register_worker(A, T0)
    job = claim(store, T0)
    done, following = store.record_and_claim(lambda: store.complete(stale(job), T0 + 1), A,
                                             T0 + 1, LEASE)
    assert done is False
    assert store.get("a").state == "processing"
    assert following.id == "b"


def test_unclaim_puts_a_never_started_job_back_as_it_was(store):
    store.enqueue([new("fresh"), new("retried", max_retries=3)], T0)
    settings_ = store.settings()
    first = claim(store, T0)
    assert first.id == "fresh"
    retried = claim(store, T0)
    assert store.fail(retried, T0 + 1, settings_, 1, "boom") == "failed"
    before = store.get("retried")

    assert store.unclaim(first, T0 + 2) is True
    back = store.get("fresh")
    assert (back.state, back.runs, back.attempts, back.worker_id, back.lease_token) == (
        "pending", 0, 0, None, None)
    assert store.attempts("fresh") == []
    assert store.unclaim(first, T0 + 3) is False  # no longer claimed: nothing to undo

    again = claim(store, before.run_at)
    again = claim(store, before.run_at) if again.id == "fresh" else again
    assert again.id == "retried"
    assert store.unclaim(again, before.run_at) is True
    back = store.get("retried")
    assert (back.state, back.runs, back.attempts, back.run_at) == (
        "failed", 1, 1, before.run_at)
    assert [a["outcome"] for a in store.attempts("retried")] == ["failed"]
