"""The Python API: what the CLI does, importable.

    from queuectl import Queue
    q = Queue("/tmp/q.db")                 # or "postgresql://...", or None for the default
    job_id = q.enqueue(command="make test", max_retries=2)
    q.get(job_id).state                    # 'pending'
"""

from __future__ import annotations

import builtins  # `list` below names Queue.list: annotations after it say builtins.list
import os

from queuectl.config import KEYS
from queuectl.errors import InputError, QueueError
from queuectl.models import TERMINAL_STATES, Job, NewJob, parse_job_spec, validate_state
from queuectl.store import Enqueued, JobStore, open_store
from queuectl.timeutil import now

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any


class Queue:
    def __init__(self, db: str | None = None, *, durable: bool = True, create: bool = True):
        """`create=False`: only look; a queue that does not exist yet reads as empty."""
        self.store: JobStore = open_store(db, durable=durable, create=create)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        return self.store.describe()

    # -- jobs -------------------------------------------------------------------------------

    def enqueue(self, command: str | None = None, **fields: Any) -> str:
        """Enqueue one job; fields as in the JSON job spec. Returns its id (or, when a live job
        with the same unique_key exists, that job's id)."""
        spec = {"command": command, **fields} if command is not None else fields
        return self.enqueue_specs([spec])[0].id

    def enqueue_specs(self, specs: list[dict[str, Any]],
                      progress=None) -> list[Enqueued]:
        """Validate every spec first, then insert them all in one transaction."""
        return self.enqueue_jobs([parse_job_spec(s, i if len(specs) > 1 else None)
                                  for i, s in enumerate(specs)], progress=progress)

    def enqueue_jobs(self, jobs: list[NewJob], progress=None) -> list[Enqueued]:
        """Jobs already validated (parse_job_spec), inserted in one transaction."""
        here = None
        for job in jobs:
            if job.cwd is None:  # a job runs where it was enqueued, so `./build.sh` works
                here = here or os.getcwd()
                job.cwd = here
        return self.store.enqueue(jobs, now(), progress=progress)

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, state: str | None = None, limit: int = 100,
             queue: str | None = None) -> list[Job]:
        if state is not None:
            validate_state(state)
        return self.store.list(state, limit, queue)

    def attempts(self, job_id: str) -> builtins.list[dict]:
        self.store.get(job_id)
        return self.store.attempts(job_id)

    def states(self, job_ids: builtins.list[str]) -> dict[str, str]:
        """The state of each job, in one query however many there are."""
        return self.store.states(job_ids)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def counts_by_queue(self) -> dict[str, dict[str, int]]:
        return self.store.counts_by_queue()

    def history(self, since: float, limit: int = 200_000) -> builtins.list[dict]:
        """Runs finished since `since` (epoch seconds), newest first, at most `limit`, for
        stats.py."""
        return self.store.attempt_history(since, limit)

    def cancel(self, *job_ids: str) -> dict[str, str]:
        """Cancel jobs: a waiting one is cancelled at once, a running one is killed by its
        worker. Every id is checked first, so an unknown or finished job cancels nothing
        (the error names only that job; the others must not be cancelled silently)."""
        for job_id in job_ids:
            job = self.store.get(job_id)
            if job.state in TERMINAL_STATES:
                raise QueueError(f"job {job_id!r} is already {job.state}; nothing to cancel")
        return {job_id: self.store.cancel(job_id, now()) for job_id in job_ids}

    def output(self, job_id: str, run: int | None = None) -> tuple[int, bytes]:
        """(run number, what that run printed); the latest run unless `run` is given."""
        from queuectl.capture import join_chunks

        job = self.store.get(job_id)
        run = job.runs if run is None else run
        if job.runs == 0:
            raise QueueError(f"job {job_id!r} has not run yet, so it has no output")
        if run < 1 or run > job.runs:
            raise InputError(f"job {job_id!r} has runs 1..{job.runs}, not {run}")
        return run, join_chunks(self.store.output(job_id, run))

    def purge(self, states: builtins.list[str], older_than: float, progress=None) -> int:
        return self.store.purge(states, before=now() - older_than, progress=progress)

    # -- dead letter queue ------------------------------------------------------------------

    def dlq_list(self, limit: int = 1000) -> builtins.list[dict]:
        return self.store.dlq_list(limit)

    def dlq_retry(self, *job_ids: str) -> builtins.list[str]:
        return self.store.dlq_retry(list(job_ids), now())

    def dlq_retry_all(self) -> int:
        """Retry every dead job a live job's unique_key does not block; returns how many.
        dlq_held() lists the ones left dead."""
        return self.store.dlq_retry_all(now())

    def dlq_held(self) -> builtins.list[str]:
        """Dead jobs that cannot be retried now: a live job holds their unique_key."""
        return self.store.dead_jobs_with_held_key()

    def recount(self) -> int:
        """Rebuild the kept job counts from the jobs (a repair; see `status --recount`)."""
        return self.store.recount()

    def dlq_purge(self) -> int:
        return self.store.dlq_purge()

    # -- config and workers -----------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return dict(self.store.settings().items())

    def config_set(self, key: str, value: Any) -> Any:
        return self.store.config_set(key, value)

    def config_set_many(self, values: dict[str, Any]) -> dict[str, Any]:
        return self.store.config_set_many(values)

    def config_unset(self, key: str) -> None:
        self.store.config_unset(key)

    def workers(self) -> builtins.list[dict]:
        """Workers that heartbeat within a lease, less those on this host whose process is
        gone (killed moments ago: their heartbeat is recent, but they are not alive)."""
        from queuectl.processes import worker_alive

        lease = self.store.settings()["lease-seconds"]
        host = os.uname().nodename  # gethostname(), without importing socket
        return [w for w in self.store.live_workers(now() - lease) if worker_alive(w, host)]


__all__ = ["Queue", "KEYS"]
