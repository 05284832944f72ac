"""The store's side of batches (DECISIONS.md 30), on every backend: several results, give-backs
and claims in one transaction, and recovery that reads a lost worker's journal."""

from __future__ import annotations

import pytest

from queuectl.errors import QueueError
from queuectl.journal import JournalEntry
from queuectl.models import NewJob

from .common import T0, A, B

LEASE = 15.0


def new(job_id: str, command: str = "true", **fields) -> NewJob:
    return NewJob(id=job_id, command=command, **fields)


def test_record_batch_claims_up_to_the_batch_size_best_first(store):
    store.enqueue([new("a"), new("b"), new("urgent", priority=5), new("c")], T0)
    store.register_worker(A, T0)
    results, claimed = store.record_batch([], A, T0, LEASE, claim=3)
    assert results == []
    assert [j.id for j in claimed] == ["urgent", "a", "b"]
    assert {store.get(j.id).state for j in claimed} == {"processing"}
    assert len({j.lease_token for j in claimed}) == 3  # one claim each, each fenced alone
    results, claimed = store.record_batch([], A, T0, LEASE, claim=3)
    assert [j.id for j in claimed] == ["c"]  # what is left


def test_a_worker_that_serves_named_queues_claims_a_batch_of_them_best_first(store):
    """On PostgreSQL one statement (claim_in_queues_many), on SQLite the one-job claim per
    job: the same jobs either way, only from the served queues, best first across them."""
    from queuectl.store import WorkerIdentity

    store.enqueue([new("a1", queue="a"), new("b1", queue="b"), new("c1", queue="c"),
                   new("a2", queue="a"), new("b-urgent", queue="b", priority=5),
                   new("a3", queue="a")], T0)
    served = WorkerIdentity(id=A.id, host=A.host, pid=A.pid, queues=["a", "b"])
    store.register_worker(served, T0)
    _, claimed = store.record_batch([], served, T0, LEASE, claim=4)
    assert [j.id for j in claimed] == ["b-urgent", "a1", "b1", "a2"]
    assert len({j.lease_token for j in claimed}) == 4
    _, claimed = store.record_batch([], served, T0, LEASE, claim=4)
    assert [j.id for j in claimed] == ["a3"]  # never c1: not a served queue
    assert store.get("c1").state == "pending"


def test_record_batch_records_every_result_and_claims_the_next_batch(store):
    store.enqueue([new(f"j{i}") for i in range(5)], T0)
    store.register_worker(A, T0)
    _, first = store.record_batch([], A, T0, LEASE, claim=2)
    records = [lambda job=job: store.complete(job, T0 + 1) for job in first]
    results, second = store.record_batch(records, A, T0 + 1, LEASE, claim=2)
    assert results == [True, True]
    assert [store.get(j.id).state for j in first] == ["completed"] * 2
    assert [j.id for j in second] == ["j2", "j3"]


def test_record_batch_is_all_or_nothing(store):
    store.enqueue([new("a"), new("b"), new("c")], T0)
    store.register_worker(A, T0)
    _, [a, b] = store.record_batch([], A, T0, LEASE, claim=2)

    def broken():
        raise QueueError("the database went away")

    with pytest.raises(QueueError):
        store.record_batch([lambda: store.complete(a, T0 + 1), broken], A, T0 + 1, LEASE,
                           claim=1)
    assert [store.get(x).state for x in "abc"] == ["processing", "processing", "pending"]


def test_a_batch_that_fails_after_its_results_went_through_stores_their_output_on_retry(store):
    """The claim fails after the results' statements ran (or were queued): nothing commits,
    and the worker's retry must store what the jobs printed, not find it marked stored."""
    from queuectl.capture import OutputCapture

    store.enqueue([new("a"), new("b"), new("c")], T0)
    store.register_worker(A, T0)
    _, [a, b, c] = store.record_batch([], A, T0, LEASE, claim=3)
    outputs = {job.id: OutputCapture(1 << 20) for job in (a, b)}
    for job_id, output in outputs.items():
        output.feed(f"{job_id} printed\n".encode())
    records = [lambda job=job: store.complete(job, T0 + 1, output=outputs[job.id])
               for job in (a, b)]
    shipped = store.db.queries
    store.db.queries = dict(shipped, claim_any_many="SELECT * FROM no_such_table")
    with pytest.raises(QueueError):
        store.record_batch(records, A, T0 + 1, LEASE, claim=2)
    store.db.queries = shipped
    assert store.get("a").state == "processing"  # all or nothing
    results, claimed = store.record_batch(records, A, T0 + 1, LEASE, claim=2)
    assert (results, claimed) == ([True, True], [])
    for job_id in "ab":
        assert b"".join(data for _, data in store.output(job_id, 1)) == (
            f"{job_id} printed\n".encode())


def test_record_batch_gives_back_what_was_claimed_ahead(store):
    store.enqueue([new("a"), new("b"), new("c")], T0)
    store.register_worker(A, T0)
    _, [a, b, c] = store.record_batch([], A, T0, LEASE, claim=3)
    results, claimed = store.record_batch([lambda: store.complete(a, T0 + 1)], A, T0 + 1,
                                          LEASE, claim=0, give_back=[b, c])
    assert (results, claimed) == ([True], [])
    for job_id in "bc":
        job = store.get(job_id)
        assert (job.state, job.runs, job.worker_id, job.lease_token) == ("pending", 0, None,
                                                                        None)


def test_record_batch_claims_nothing_for_a_worker_asked_to_stop(store):
    store.enqueue([new("a"), new("b")], T0)
    store.register_worker(A, T0)
    store.request_stop(alive_since=T0 - 1)
    assert store.record_batch([], A, T0, LEASE, claim=2) == ([], [])
    assert store.counts()["pending"] == 2


# -- recovery with a journal --------------------------------------------------------------------


def lost_batch(store, *extra: NewJob):
    """Worker A claims a batch of three and dies: `done` finished (its result only in the
    journal), `running` was running, `ahead` never started."""
    store.enqueue([new("done"), new("running"), new("ahead"), *extra], T0)
    store.register_worker(A, T0)
    _, claimed = store.record_batch([], A, T0, LEASE, claim=3 + len(extra))
    return {job.id: job for job in claimed}


def test_recovery_records_held_results_and_gives_back_jobs_that_never_started(store):
    jobs = lost_batch(store)
    journal = {
        "done": JournalEntry(jobs["done"].lease_token, T0 + 1, 0, T0 + 2, b"printed\n"),
        "running": JournalEntry(jobs["running"].lease_token, T0 + 2),
    }
    recovered = store.recover_lost(T0 + 3, store.settings(), dead_worker_ids=[A.id],
                                   journal_of=lambda worker_id: journal)
    assert sorted((job.id, state) for job, state in recovered) == [
        ("ahead", "pending"), ("done", "completed"), ("running", "pending")]

    done = store.get("done")
    assert (done.state, done.attempts, done.crashes, done.runs, done.exit_code) == (
        "completed", 1, 0, 1, 0)
    [attempt] = store.attempts("done")
    assert (attempt["outcome"], attempt["started_at"], attempt["finished_at"]) == (
        "completed", T0 + 1, T0 + 2)
    assert b"".join(data for _, data in store.output("done", 1)) == b"printed\n"

    running = store.get("running")  # it was running when its worker died: a crash, as ever
    assert (running.state, running.attempts, running.crashes, running.runs) == (
        "pending", 0, 1, 1)
    assert [a["outcome"] for a in store.attempts("running")] == ["crashed"]

    ahead = store.get("ahead")  # as if never claimed: no run, no crash, no history
    assert (ahead.state, ahead.attempts, ahead.crashes, ahead.runs) == ("pending", 0, 0, 0)
    assert store.attempts("ahead") == []


def test_recovery_without_a_journal_charges_every_job_a_crash_as_before(store):
    lost_batch(store)
    recovered = store.recover_lost(T0 + 3, store.settings(), dead_worker_ids=[A.id],
                                   journal_of=lambda worker_id: None)
    assert sorted(state for _, state in recovered) == ["pending"] * 3
    assert [store.get(j).crashes for j in ("done", "running", "ahead")] == [1, 1, 1]


def test_a_job_cancelled_while_it_waited_in_a_lost_batch_ends_cancelled(store):
    jobs = lost_batch(store)
    assert store.cancel("ahead", T0 + 1) == "cancelling"  # it looked running
    recovered = store.recover_lost(T0 + 3, store.settings(), dead_worker_ids=[A.id],
                                   journal_of=lambda worker_id: {})
    assert ("ahead", "cancelled") in [(job.id, state) for job, state in recovered]
    ahead = store.get("ahead")
    assert (ahead.state, ahead.crashes, ahead.runs, ahead.cancel_requested) == (
        "cancelled", 0, 0, 0)
    assert ahead.last_error == "cancelled by user before it started"
    assert store.attempts("ahead") == []  # it never ran
    assert jobs  # the others were in no journal either: never started, given back
    assert store.get("done").state == "pending"
    assert store.counts()["cancelled"] == 1


def test_a_job_cancelled_while_it_waited_in_a_batch_is_cancelled_when_given_back(store):
    store.enqueue([new("a"), new("b")], T0)
    store.register_worker(A, T0)
    _, [a, b] = store.record_batch([], A, T0, LEASE, claim=2)
    assert store.cancel("b", T0 + 1) == "cancelling"
    store.record_batch([lambda: store.complete(a, T0 + 2)], A, T0 + 2, LEASE, claim=0,
                       give_back=[b])
    given_back = store.get("b")
    assert (given_back.state, given_back.runs, given_back.finished_at) == (
        "cancelled", 0, T0 + 2)
    assert store.counts()["cancelled"] == 1


def test_held_results_record_an_attempt_only_for_the_jobs_still_owned(store):
    """Held results are sent together after the Python that built them: on SQLite each
    result's attempt row checks its own finish_job's row count (insert_attempt_after_finish),
    on PostgreSQL one statement does both. A result in the middle whose job is no longer
    ours must record nothing, and must not stop the ones around it."""
    store.enqueue([new("first"), new("taken"), new("last")], T0)
    store.register_worker(A, T0)
    _, batch = store.record_batch([], A, T0, LEASE, claim=3)
    assert [j.id for j in batch] == ["first", "taken", "last"]
    assert store.unclaim(batch[1], T0)  # no attempt row for A's claim of it...
    store.register_worker(B, T0)
    _, [again] = store.record_batch([], B, T0 + 1, LEASE, claim=1)
    assert (again.id, again.runs) == ("taken", batch[1].runs)  # ...and B's run has its number

    records = [lambda job=job: store.complete(job, T0 + 2) for job in batch]
    results, _ = store.record_batch(records, A, T0 + 2, LEASE, claim=0)
    assert results == [True, False, True]

    def completions(job_id):
        return [a["worker_id"] for a in store.attempts(job_id) if a["outcome"] == "completed"]

    assert (completions("first"), completions("taken"), completions("last")) == (
        [A.id], [], [A.id])
    assert [store.get(j).state for j in ("first", "taken", "last")] == [
        "completed", "processing", "completed"]
    assert store.record_batch([lambda: store.complete(again, T0 + 3)], B, T0 + 3, LEASE,
                              claim=0)[0] == [True]
    assert completions("taken") == [B.id]  # B's result still finds its run's row free


def test_a_held_result_is_refused_once_another_worker_took_the_job_over(store):
    jobs = lost_batch(store)
    stale_journal = {"done": JournalEntry(jobs["done"].lease_token, T0 + 1, 0, T0 + 2)}
    # B takes everything over first (lease expired, no journal read)...
    store.recover_lost(T0 + LEASE + 1, store.settings(), journal_of=None)
    store.register_worker(B, T0 + LEASE + 1)
    again = store.claim(B, T0 + LEASE + 2, LEASE)
    assert again is not None
    # ...so A's journal, read late, speaks of claims that are no longer anyone's.
    assert store.recover_lost(T0 + LEASE + 3, store.settings(), dead_worker_ids=[A.id],
                              journal_of=lambda worker_id: stale_journal) == []
    assert store.get(again.id).state == "processing"


def test_a_recovery_killed_after_its_take_over_still_finds_the_journal_s_result(store):
    """The take-over gives the job a new token; the recovering worker dies before it records
    the held result. The next recovery must find the result by the job's id, not run the
    job again (chaos scenario 4 found this: its kills hit recoveries too)."""
    jobs = lost_batch(store)
    journal = {
        "done": JournalEntry(jobs["done"].lease_token, T0 + 1, 0, T0 + 2, b""),
        "running": JournalEntry(jobs["running"].lease_token, T0 + 2),
    }

    def die_after_taking_over_done(job):
        if job.id == "done":
            raise SystemExit("the recovering worker is killed")

    with pytest.raises(SystemExit):
        store.recover_lost(T0 + 3, store.settings(), dead_worker_ids=[A.id],
                           stop_leftovers=die_after_taking_over_done,
                           journal_of=lambda worker_id: journal)
    done = store.get("done")
    assert done.state == "processing" and done.lease_token != jobs["done"].lease_token
    assert done.worker_id == A.id  # a take-over keeps the owner: the next one reads A's journal

    store.recover_lost(T0 + 4, store.settings(), dead_worker_ids=[A.id],
                       journal_of=lambda worker_id: journal)
    assert [store.get(j).state for j in ("done", "running", "ahead")] == [
        "completed", "pending", "pending"]
    assert (store.get("done").attempts, store.get("done").crashes) == (1, 0)
    assert store.get("running").crashes == 1
    assert (store.get("ahead").runs, store.get("ahead").crashes) == (0, 0)


# -- PostgreSQL: the journal in the database (journal_table.py) --------------------------------


@pytest.fixture
def pg_store(pg_database):
    from queuectl.store import open_store

    s = open_store(pg_database)
    yield s
    s.close()


def test_a_journal_table_read_from_another_host_records_held_results(pg_store):
    """What worker A wrote to the table is what B, on another host, reads when A's leases run
    out: the same three cases as a journal file."""
    from queuectl.journal_table import TableJournal

    store = pg_store
    jobs = lost_batch(store)
    journal = TableJournal(store, A.id)
    journal.started(jobs["done"], T0 + 1)
    journal.ended(jobs["done"], T0 + 1, T0 + 2, 0, b"printed\n")
    journal.started(jobs["running"], T0 + 2)  # carries the result of "done" along
    # A dies here. B recovers by lease expiry, A's journal read from the table.
    entries = store.journal_entries(A.id)
    assert set(entries) == {"done", "running"}
    assert (entries["done"].exit_code, entries["done"].output) == (0, b"printed\n")
    assert entries["running"].exit_code is None
    recovered = store.recover_lost(T0 + LEASE + 1, store.settings(),
                                   journal_of=store.journal_entries)
    assert sorted((job.id, state) for job, state in recovered) == [
        ("ahead", "pending"), ("done", "completed"), ("running", "pending")]
    assert b"".join(data for _, data in store.output("done", 1)) == b"printed\n"
    assert [store.get(j).crashes for j in ("done", "running", "ahead")] == [0, 1, 0]
    assert store.get("ahead").runs == 0


def test_a_journal_table_tells_an_empty_journal_from_none(pg_store):
    from queuectl.journal_table import TableJournal

    assert pg_store.journal_entries(A.id) is None  # never kept one: every job a crash
    journal = TableJournal(pg_store, A.id)
    assert pg_store.journal_entries(A.id) == {}  # kept one, nothing started: all given back
    journal.close(remove=True)
    assert pg_store.journal_entries(A.id) is None


def test_a_commit_clears_the_journal_table_but_the_running_job_s_start(pg_store):
    from queuectl.journal_table import TableJournal

    store = pg_store
    jobs = lost_batch(store)
    journal = TableJournal(store, A.id)
    journal.started(jobs["done"], T0 + 1)
    journal.ended(jobs["done"], T0 + 1, T0 + 2, 0, b"")
    journal.started(jobs["running"], T0 + 2)
    journal.committed(running=True)  # a long job's first cancel check settled the batch
    assert set(store.journal_entries(A.id)) == {"running"}
    journal.committed()
    assert store.journal_entries(A.id) == {}


def test_a_dead_worker_s_journal_table_lines_go_with_its_row(pg_store):
    from queuectl.journal_table import TableJournal

    store = pg_store
    store.register_worker(A, T0)
    TableJournal(store, A.id)
    store.forget_dead_workers(alive_since=T0 + 1)  # A's row is gone, and no job names A
    assert store.journal_entries(A.id) is None
