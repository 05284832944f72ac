"""A PostgreSQL worker's journal: what journal.py keeps in a file, kept in the database.

A PostgreSQL worker that runs short jobs back to back records them in batches, as a SQLite
worker does (DECISIONS.md §30, §31): one durable commit per batch instead of one per job.
Meanwhile each finished job's result is held, and journaled first: here, in the unlogged table
`worker_journal`. A write to it commits without waiting for the disk (the table has no WAL),
so it costs a fraction of a durable commit, and it is on the server, not on the worker's host:
any worker, on any host, reads a lost worker's journal before it takes its jobs over, with the
rules of journal.py (a result is recorded; a start without a result is a crash; a job the
journal does not name was never started and goes back uncharged).

What can lose a line: the server empties unlogged tables when it recovers from a crash (or a
failover), but then the worker still holds what it journaled, and records it once it
reconnects. Only the worker and the server lost at once (one machine running both loses
power) lose a held result; its job then runs again, as it would after such a loss with SQLite.

One round trip per job: a result is not sent on its own but with the start of the next job,
which follows at once (the worker flushes it first when it has other database work to do
before that start). A worker killed between the two loses that one result, and its job runs
again as a crashed one: the same window as between a job's end and its commit without
batches. A marker line (job id '') says that the worker keeps a journal, so an empty one is
told from none.
"""

from __future__ import annotations

from queuectl.models import Job

TYPE_CHECKING = False
if TYPE_CHECKING:
    from queuectl.store.jobstore import JobStore


class TableJournal:
    """The writing side, one per worker process; journal.Journal's interface. Its calls raise
    QueueError when the database cannot be reached (the worker then stops batching)."""

    def __init__(self, store: JobStore, worker_id: str):
        self.store, self.worker_id = store, worker_id
        self._unsent: list[dict] = []  # a result that goes with the next start
        self._running = ""  # the job whose start must outlive a commit (committed(running))
        self._lines = False  # lines besides the marker may be in the table: a commit clears them
        store.journal_write(worker_id, [{"job_id": "", "token": "", "started_at": 0.0}])

    def started(self, job: Job, at: float) -> None:
        """Before the job's command is spawned (with the previous job's result, if one waits)."""
        line = {"job_id": job.id, "token": job.lease_token, "started_at": at}
        self.store.journal_write(self.worker_id, self._unsent + [line])
        self._unsent = []
        self._running = job.id
        self._lines = True

    def ended(self, job: Job, started_at: float, finished_at: float, exit_code: int,
              output: bytes) -> None:
        """The job's result, sent with the next start (or dropped by the commit that records
        it first)."""
        self._running = ""
        self._unsent.append({"job_id": job.id, "token": job.lease_token or "",
                             "started_at": started_at, "exit_code": exit_code,
                             "finished_at": finished_at, "output": output})

    def flush(self) -> None:
        """Send a result that waits for the next start now: the worker is about to do
        something else first (maintenance, a read of the stop flag)."""
        if self._unsent:
            self.store.journal_write(self.worker_id, self._unsent)
            self._unsent = []
            self._lines = True

    def clear_with_commit(self, running: bool = False) -> str | None:
        """For the commit about to record what the journal holds (JobStore.record_batch's
        clear_journal): the job whose lines must stay (`running`), or '', so that the commit
        clears the rest itself, in the same transaction and round trip; None when there is
        nothing to clear."""
        if not self._lines:
            return None
        return self._running if running else ""

    def committed(self, running: bool = False, cleared: bool = False) -> None:
        """Everything held is recorded: remove its lines, keeping the start of the job still
        `running`; done already when the commit `cleared` them."""
        self._unsent = []
        keep = self._running if running else ""
        if self._lines and not cleared:  # a round trip; none when nothing was written since
            self.store.journal_clear(self.worker_id, keep=keep)
        self._running = keep
        self._lines = bool(keep)

    def close(self, remove: bool) -> None:
        """On exit. Kept (remove=False) when results are still held: a recovering worker
        records them, so the one not sent yet is sent now."""
        if remove:
            self.store.journal_forget(self.worker_id)
        elif self._unsent:
            self.store.journal_write(self.worker_id, self._unsent)
            self._unsent = []
