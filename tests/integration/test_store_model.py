"""A model of the job lifecycle, checked against a real JobStore under random operation
sequences (hypothesis' stateful testing), on SQLite and on PostgreSQL.

Several fake workers claim, finish, fail, release and cancel-finish jobs; some of them act
on claims they have lost (a stale lease token after a takeover, or after the job finished),
which must change nothing. The clock is the store's `now`, moved on by the test, so lease
expiry and recovery happen without waiting. After every step the store must hold exactly
the model's jobs, and every change since the previous step must be a legal transition of the
spec (pending/processing/completed/failed/dead, plus cancelled).
"""

from __future__ import annotations

import math
import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuectl.errors import InputError, JobNotFound, QueueError
from queuectl.models import (
    CANCELLED,
    COMPLETED,
    DEAD,
    FAILED,
    PENDING,
    PROCESSING,
    TERMINAL_STATES,
    NewJob,
)
from queuectl.store import WorkerIdentity, open_store

from .common import T0

EXAMPLES = int(os.environ.get("QUEUECTL_MODEL_EXAMPLES", "40"))
LEASE, BASE, MAX_CRASHES = 15.0, 2.0, 3
WORKERS = [WorkerIdentity(id=f"host-{n}:{100 + n}:w", host=f"host-{n}", pid=100 + n)
           for n in range(3)]

# (old state, new state) a single operation may cause; None is "no such job" (enqueued or
# purged). The operation that may cause it is checked by the model; this is the spec's graph.
LEGAL = {
    (None, PENDING),
    (PENDING, PROCESSING), (FAILED, PROCESSING),          # claim
    (PROCESSING, COMPLETED), (PROCESSING, FAILED), (PROCESSING, DEAD),
    (PROCESSING, PENDING),                                 # released, or recovered
    (PROCESSING, CANCELLED), (PENDING, CANCELLED), (FAILED, CANCELLED),
    (DEAD, PENDING),                                       # dlq retry
    (COMPLETED, None), (DEAD, None), (CANCELLED, None),    # purge
}


class ModelJob:
    def __init__(self, job_id: str, seq: int, priority: int, max_retries: int, run_at: float):
        self.id, self.seq, self.priority, self.max_retries = job_id, seq, priority, max_retries
        self.state, self.attempts, self.crashes, self.run_at = PENDING, 0, 0, run_at
        self.token: str | None = None
        self.lease_until = 0.0
        self.cancel_requested = False


class JobLifecycle(RuleBasedStateMachine):
    target: str  # set by the test: the database to use

    def __init__(self):
        super().__init__()
        self.store = open_store(self.target, durable=False)
        self.now = T0
        self.jobs: dict[str, ModelJob] = {}
        self.handles: list = []  # every claim ever handed out: current ones and stale ones
        self.enqueued = 0
        self.seen: dict[str, tuple[str, int]] = {}  # id -> (state, attempts) at the last check

    def teardown(self):
        self.store.close()

    @initialize()
    def settings(self):
        self.store.config_set_many({"lease-seconds": str(LEASE), "backoff-base": str(BASE),
                                    "max-crashes": str(MAX_CRASHES), "backoff-jitter": "0"})

    # -- helpers --------------------------------------------------------------------------

    def current(self, handle) -> bool:
        job = self.jobs.get(handle.id)
        return job is not None and job.state == PROCESSING and job.token == handle.lease_token

    def ready(self) -> list[ModelJob]:
        return [j for j in self.jobs.values()
                if j.state in (PENDING, FAILED) and j.run_at <= self.now]

    # -- rules ----------------------------------------------------------------------------

    @rule(priority=st.integers(-1, 1), max_retries=st.integers(0, 2),
          delay=st.sampled_from([0.0, 0.0, 3.0, 40.0]), count=st.integers(1, 2))
    def enqueue(self, priority, max_retries, delay, count):
        specs = []
        for _ in range(count):
            self.enqueued += 1
            job_id = f"j{self.enqueued}"
            specs.append(NewJob(id=job_id, command="true", priority=priority,
                                max_retries=max_retries, delay=delay))
            self.jobs[job_id] = ModelJob(job_id, self.enqueued, priority, max_retries,
                                         self.now + delay)
        results = self.store.enqueue(specs, self.now)
        assert [r.id for r in results] == [s.id for s in specs]

    @rule(worker=st.sampled_from(WORKERS))
    def claim(self, worker):
        ready = self.ready()
        job = self.store.claim(worker, self.now, LEASE)
        if not ready:
            assert job is None, f"claimed {job.id} while nothing was due"
            return
        assert job is not None, f"nothing claimed while {[j.id for j in ready]} were due"
        best = min(ready, key=lambda j: (-j.priority, j.run_at, j.seq))
        assert job.id == best.id, f"claimed {job.id}, but {best.id} comes first"
        model = self.jobs[job.id]
        assert (job.attempts, job.lease_token) != (None, None)
        assert job.attempts == model.attempts and job.lease_token != model.token
        model.state, model.token, model.lease_until = PROCESSING, job.lease_token, self.now + LEASE
        self.handles.append(job)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def complete(self, data):
        handle = data.draw(st.sampled_from(self.handles))
        expected = self.current(handle)
        assert self.store.complete(handle, self.now) is expected
        if expected:
            job = self.jobs[handle.id]
            job.state, job.attempts, job.token = COMPLETED, job.attempts + 1, None
            job.cancel_requested = False

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def fail(self, data):
        handle = data.draw(st.sampled_from(self.handles))
        expected = self.current(handle)
        state = self.store.fail(handle, self.now, self.store.settings(), 1, "exit code 1")
        if not expected:
            assert state is None
            return
        job = self.jobs[handle.id]
        job.attempts += 1
        job.token, job.cancel_requested = None, False
        if job.attempts > job.max_retries:
            job.state = DEAD
        else:
            job.state, job.run_at = FAILED, self.now + BASE ** job.attempts
        assert state == job.state

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def release(self, data):
        handle = data.draw(st.sampled_from(self.handles))
        expected = self.current(handle)
        assert self.store.release(handle, self.now, "cold stop") is expected
        if expected:
            job = self.jobs[handle.id]
            job.state, job.run_at, job.token, job.cancel_requested = PENDING, self.now, None, False

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def finish_cancelled(self, data):
        handle = data.draw(st.sampled_from(self.handles))
        expected = self.current(handle)
        assert self.store.finish_cancelled(handle, self.now, -15) is expected
        if expected:
            job = self.jobs[handle.id]
            job.state, job.token, job.cancel_requested = CANCELLED, None, False

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def renew(self, data):
        handle = data.draw(st.sampled_from(self.handles))
        expected = self.current(handle)
        assert self.store.renew_lease(handle, self.now, LEASE) is expected
        if expected:
            self.jobs[handle.id].lease_until = self.now + LEASE

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0, LEASE + 1]))
    def tick(self, seconds):
        self.now += seconds

    @rule(extra=st.sampled_from([0.0, 1.0, LEASE + 1]))
    def recover_lost(self, extra):
        self.now += extra
        lost = {j.id for j in self.jobs.values()
                if j.state == PROCESSING and j.lease_until < self.now}
        recovered = self.store.recover_lost(self.now, self.store.settings())
        assert {job.id for job, _ in recovered} == lost
        for stored, state in recovered:
            job = self.jobs[stored.id]
            job.crashes += 1
            if job.cancel_requested:
                expected = CANCELLED
            elif job.crashes >= MAX_CRASHES:
                expected = DEAD
            else:
                expected, job.run_at = PENDING, self.now
            assert state == expected, (stored.id, state, expected)
            job.state, job.token, job.cancel_requested = expected, None, False

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data):
        job_id = data.draw(st.sampled_from(sorted(self.jobs)) | st.just("nosuch"))
        job = self.jobs.get(job_id)
        if job is None:
            with pytest.raises(JobNotFound):
                self.store.cancel(job_id, self.now)
        elif job.state in (PENDING, FAILED):
            assert self.store.cancel(job_id, self.now) == CANCELLED
            job.state = CANCELLED
        elif job.state == PROCESSING:
            assert self.store.cancel(job_id, self.now) == "cancelling"
            job.cancel_requested = True
        else:
            with pytest.raises(QueueError):
                self.store.cancel(job_id, self.now)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def dlq_retry(self, data):
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        job = self.jobs[job_id]
        if job.state != DEAD:
            with pytest.raises(InputError):
                self.store.dlq_retry([job_id], self.now)
            return
        assert self.store.dlq_retry([job_id], self.now) == [job_id]
        job.state, job.attempts, job.crashes, job.run_at = PENDING, 0, 0, self.now

    @rule(states=st.lists(st.sampled_from(sorted(TERMINAL_STATES)), min_size=1, unique=True))
    def purge(self, states):
        doomed = {j.id for j in self.jobs.values() if j.state in states}
        assert self.store.purge(states, before=math.inf) == len(doomed)
        for job_id in doomed:
            del self.jobs[job_id]

    @rule(state=st.sampled_from([PENDING, PROCESSING, FAILED]))
    def purge_of_an_unfinished_state_is_refused(self, state):
        with pytest.raises(InputError):
            self.store.purge([state], before=math.inf)

    # -- after every step -----------------------------------------------------------------

    @invariant()
    def store_matches_the_model(self):
        stored = {job.id: job for job in self.store.list(limit=10_000)}
        assert set(stored) == set(self.jobs)
        for job_id, model in self.jobs.items():
            job = stored[job_id]
            assert (job.state, job.attempts) == (model.state, model.attempts), job_id
            assert job.crashes == model.crashes, job_id
            assert bool(job.cancel_requested) == model.cancel_requested, job_id
            if model.state == PROCESSING:
                assert job.lease_token == model.token, job_id
            else:
                assert job.lease_token is None, job_id
            if model.state in (PENDING, FAILED):
                assert job.run_at == pytest.approx(model.run_at), job_id
            assert (job.finished_at is not None) == (model.state in TERMINAL_STATES), job_id

    @invariant()
    def every_change_is_a_legal_transition(self):
        now = {job.id: (job.state, job.attempts) for job in self.store.list(limit=10_000)}
        for job_id in set(now) | set(self.seen):
            old_state, old_attempts = self.seen.get(job_id, (None, 0))
            new_state, new_attempts = now.get(job_id, (None, old_attempts))
            if old_state == new_state:
                assert new_attempts == old_attempts, (job_id, old_attempts, new_attempts)
                continue
            assert (old_state, new_state) in LEGAL, (job_id, old_state, new_state)
            if (old_state, new_state) != (DEAD, PENDING):  # only a dlq retry resets attempts
                assert new_attempts >= old_attempts, (job_id, old_attempts, new_attempts)
        self.seen = now


def _truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, attempts, output_chunks, workers, config")


@pytest.mark.timeout(300)
def test_the_job_lifecycle_follows_the_model(db):
    postgres = "://" in db
    if postgres:
        open_store(db).close()  # the schema, once; each example starts from empty tables

    with tempfile.TemporaryDirectory(prefix="queuectl-model-") as folder:
        files = iter(range(10**9))

        class Machine(JobLifecycle):
            def __init__(self):
                if postgres:
                    _truncate(db)
                    type(self).target = db
                else:  # a new file per example: cheaper than emptying one
                    type(self).target = os.path.join(folder, f"q{next(files)}.db")
                super().__init__()

        run_state_machine_as_test(Machine, settings=settings(
            max_examples=EXAMPLES if not postgres else EXAMPLES // 2,
            stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
