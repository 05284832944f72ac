"""One worker: claim a job, run it, record the outcome; heartbeat its lease while it runs.

`run_once(now)` is one step of the loop with the clock passed in, so tests can drive it.
"""

from __future__ import annotations

import os
import random
import select
import time
from collections import deque
from collections.abc import Callable

from queuectl import journal
from queuectl.errors import QueueError
from queuectl.journal import Journal, journal_path
from queuectl.log import log
from queuectl.models import Job
from queuectl.pausing import PauseSwitch
from queuectl.processes import (
    groups_of_run,
    is_same_group,
    kill_group,
    process_alive,
    start_stamp,
)
from queuectl.runner import RunningJob, StartFailed, describe_exit
from queuectl.stopping import COLD, RUNNING, WARM, StopRequests
from queuectl.store import JobStore, WorkerIdentity, strip_password
from queuectl.watchdog import Watchdog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from queuectl.journal_table import TableJournal

IDLE_CHECK_SECONDS = 0.02  # how often an idle worker asks whether anything changed, when it asks
STILL_TRYING_EVERY_SECONDS = 60.0  # how often a worker says it still cannot record a result
SETTLE_SECONDS = 1.0  # how long it keeps asking after the database said it was written to
SETTLE_FIRST_PAUSE = 0.001  # the first of those asks, doubling up to IDLE_CHECK_SECONDS
MAINTENANCE_SECONDS = 2.0  # recovery scan and stop-flag check, at the latest this often
OUTPUT_FLUSH_SECONDS = 1.0  # how stale `logs -f` may be for a running job
CANCEL_CHECK_SECONDS = 0.25  # a running job looks for a cancel at most this often
RETENTION_EVERY_SECONDS = 60.0
# Batches (SQLite only, DECISIONS.md 30): a worker whose jobs end quickly, succeed and print
# little claims up to BATCH_MOST at once and records their results together, one commit per
# batch, holding each result in its journal meanwhile. A job that ran longer than
# HOLD_SECONDS, failed or printed more than HOLD_OUTPUT_BYTES is recorded at once, and ends
# the batch: the worker goes back to one job at a time until its jobs are short again.
BATCH_MOST = 16
HOLD_SECONDS = CANCEL_CHECK_SECONDS  # a longer job has given its batch back by then
HOLD_OUTPUT_BYTES = 4096
# What a batch claimed but did not start within this long after its claim is given back: a
# more urgent job, a stop or an idle worker never waits longer for a batch of short jobs.
BATCH_SECONDS = 1.0
# How stale the stop flag may be when a job of a batch starts: `worker stop` stops a busy
# worker right after its current job, batch or not (a batch of `true` jobs takes less).
AHEAD_STOP_CHECK_SECONDS = 0.05

# What _durably returns when a stopping worker gave up recording a result (it has said why):
# not False, which the store's own answer means (the job was no longer ours).
GAVE_UP = object()


def _due(now: float, last: float | None, every: float) -> bool:
    """Whether a periodic task that last ran at `last` is due again. The times are the worker's
    clock, the wall clock (tests drive it): one stepped back (NTP, a VM's restore) must not
    stall the task until it has caught up again, so a clock behind `last` makes it due."""
    return last is None or now >= last + every or now < last


def new_identity(queues: list[str] | None = None) -> WorkerIdentity:
    # os.uname() and os.urandom, not socket.gethostname() and secrets: the same answers
    # without importing socket and secrets (with hmac and hashlib), 6 ms of `worker start`.
    host = os.uname().nodename
    pid = os.getpid()
    return WorkerIdentity(
        id=f"{host}:{pid}:{os.urandom(2).hex()}",
        host=host,
        pid=pid,
        pid_started=start_stamp(pid),
        queues=queues,
    )


class Worker:
    def __init__(
        self,
        store: JobStore,
        identity: WorkerIdentity,
        *,
        stops: StopRequests | None = None,
        watchdog: Watchdog | None = None,
        pause: PauseSwitch | None = None,
        clock: Callable[[], float] = time.time,
        verbose: bool = True,
    ):
        self.store = store
        self.identity = identity
        self.stops = stops or StopRequests()
        self.watchdog = watchdog
        self.pause = pause  # set by the supervisor on Ctrl-Z: take no job (pausing.py)
        self.clock = clock
        self.verbose = verbose
        self.settings = store.settings()
        # Every job's QUEUECTL_DB: the same for the worker's life, and a PostgreSQL URL takes
        # two parses to mask and strip (about 15 µs, on every job when made per job).
        self._queue_for_jobs = strip_password(store.describe())
        # When maintenance, the heartbeat and retention last ran, on self.clock (see _due).
        self._last_maintenance: float | None = None
        self._last_heartbeat: float | None = None
        self._last_retention: float | None = None
        self._lease_until = 0.0  # monotonic time our current job's lease surely lasts until
        # Jobs claimed in the transaction that recorded the last one (see _record): already
        # ours, so run_once runs them in turn instead of claiming. More than one only in a
        # batch, which only a worker with a journal runs (use_journal).
        self._ahead: deque[Job] = deque()
        self._ahead_good_until = 0.0  # monotonic: a job ahead may start until then
        self._stop_flag_fresh_until = 0.0  # monotonic: a job ahead starts without reading it
        # Results of finished jobs that wait for the batch's commit, each in the journal:
        # (job, the store call that records it, what to say once it is recorded).
        self._held: list[tuple[Job, Callable[[], object], str]] = []
        self._journal: Journal | TableJournal | None = None
        self._journal_wanted = False  # use_journal was called: batches are wanted
        self._queue_file_path: str | None = None  # see _queue_file
        self._batch_size = 1  # jobs the next claim takes: grows while jobs are short
        self.jobs_done = 0
        self._marked_stopping = False  # our row says "stopping" (see _mark_stopping)
        self._shown_paused = False  # our row says "paused" (see _wait_while_paused)
        # Whether the worker waits for work when it finds none (not with --burst): only then
        # does it need the change watch (see run_once).
        self._waits_when_idle = True

    # -- lifecycle --------------------------------------------------------------------------

    def run(self, burst: bool = False) -> int:
        """Work until asked to stop. Exit status: 0 after a warm stop, 1 after a cold one."""
        self._waits_when_idle = not burst
        self.store.register_worker(self.identity, self.clock())
        self._say(f"started (pid {self.identity.pid}) on {self.store.describe()}")
        self.use_journal()
        try:
            while self.stops.level == RUNNING:
                try:
                    if self._paused():
                        self._wait_while_paused()
                        continue
                    if self._shown_paused:  # resumed: before any claim, which the mark stops
                        self._show_paused(False)
                    worked = self.run_once(self.clock())
                except QueueError as exc:
                    self._say(f"database error, retrying in 1s: {exc}")
                    self._sleep(1.0)
                    continue
                if not worked:
                    if self._paused():  # paused while it looked: not a sign the queue is dry
                        continue
                    if burst:
                        break
                    self._idle_wait()
        finally:
            self._settle()
            try:
                self.store.unregister_worker(self.identity.id)
            except QueueError:
                pass
            if self._journal is not None:
                # Kept while it holds results nobody recorded: a recovering worker will.
                try:
                    self._journal.close(remove=not self._held)
                except (OSError, QueueError):
                    pass
            if self.watchdog is not None:
                self.watchdog.close()
        how = {COLD: "cold stop", WARM: "warm stop"}.get(self.stops.level, "no job ready")
        self._say(f"stopped ({how}) after {self.jobs_done} jobs")
        return 1 if self.stops.level == COLD else 0

    def use_journal(self) -> bool:
        """Keep a journal, which lets this worker run short jobs in batches: a file next to a
        SQLite queue (journal.py), a table of a PostgreSQL one (journal_table.py). False (and
        no batches) when it cannot be made; a PostgreSQL worker tries again at its next
        maintenance (the server may have been away a moment)."""
        if self._journal is None:
            self._journal_wanted = True
            try:
                if self.store.db.dialect == "sqlite":
                    self._journal = Journal(journal_path(self._queue_file(), self.identity.id))
                else:
                    from queuectl.journal_table import TableJournal

                    self._journal = TableJournal(self.store, self.identity.id)
            except (OSError, QueueError) as exc:
                self._say(f"no journal ({exc}); recording every job on its own")
        return self._journal is not None

    def _queue_file(self) -> str:
        # realpath: every worker of the queue must find the same journals folder. Resolved
        # once: recovery asks at every maintenance pass.
        if self._queue_file_path is None:
            self._queue_file_path = os.path.realpath(self.store.db.path)  # type: ignore[attr-defined]
        return self._queue_file_path

    def run_once(self, now: float) -> bool:
        """Maintenance if due, then claim and run at most one job. True if a job ran."""
        self.maintain(now)
        job = self._next_ahead()
        if job is None:
            # Maintenance is due only every few seconds, but `worker stop` promises that no
            # job starts once it asked: read the flag before every claim (one primary-key
            # read; a chained claim reads it inside its transaction instead).
            if self.stops.level == RUNNING:
                self._check_stop_flag(now)
            if self.stops.level != RUNNING or self._paused():
                return False
            # Note the database's version before looking: a job enqueued after this point
            # wakes the idle wait at once instead of waiting out poll-seconds. Read the clock
            # only after that: a job committed before the note carries its enqueuer's clock,
            # and claiming with an older `now` would find it not yet due, with no wake to come.
            # A --burst worker never waits, so it makes no watch: closing an inotify
            # descriptor, at the latest when the process exits, waits out an RCU grace period
            # in the kernel (5 to 15 ms), at the end of every burst.
            if self._waits_when_idle:
                self.store.db.change_fd()
            self.store.db.changed()
            job = self.store.claim(self.identity, self.clock(), self.settings["lease-seconds"])
            if job is None:
                return False
        elif self.stops.level != RUNNING or self._paused():  # came after the chained claim
            self._ahead.appendleft(job)
            self._settle()
            return False
        if self.execute(job):
            self.jobs_done += 1
        return True

    def _paused(self) -> bool:
        pause = self.pause
        return pause is not None and pause.paused

    def _wait_while_paused(self) -> None:
        """Take no job until resumed, and meanwhile stay what an idle worker is: its row
        heartbeated, `worker stop` and others' lost jobs seen to. The supervisor's SIGCONT on
        resuming, or any stop signal, ends the sleep early. Its row says "paused" meanwhile,
        for `status` and the dashboard."""
        self._settle()  # what was claimed ahead must not wait out the pause, unrenewed
        while self.stops.level == RUNNING and self._paused():
            if not self._shown_paused:
                self._show_paused(True)
            self.maintain(self.clock())
            self._sleep(min(MAINTENANCE_SECONDS, self.settings["heartbeat-seconds"]))

    def _show_paused(self, paused: bool) -> None:
        self.store.mark_paused(self.identity.id, paused)
        self._shown_paused = paused

    def _next_ahead(self) -> Job | None:
        """The next job claimed ahead, if any. Once BATCH_SECONDS have passed since its claim
        (or half the lease, if shorter: jobs ahead have no heartbeat) the rest of the batch is
        given back instead: a batch of short jobs that ran long, or a worker frozen meanwhile,
        does not keep others waiting and never starts a job another worker may have taken.
        The stop flag is read again when it is older than AHEAD_STOP_CHECK_SECONDS, so that
        `worker stop` takes effect after the current job (run_once gives the batch back)."""
        if self._ahead and time.monotonic() >= self._ahead_good_until:
            self._batch_size = 1
            self._settle()
        if (self._ahead and self.stops.level == RUNNING
                and time.monotonic() >= self._stop_flag_fresh_until):
            self._flush_journal()
            self._check_stop_flag(self.clock())  # before the pop: it may raise
            self._stop_flag_fresh_until = time.monotonic() + AHEAD_STOP_CHECK_SECONDS
        return self._ahead.popleft() if self._ahead else None

    def _settle(self, once: bool = False) -> None:
        """Record the results held back and give back the jobs claimed ahead, in one
        transaction: before the worker stops, pauses, or runs a job that turned out long.
        Retries through an outage as any result does (_durably), unless `once` (a running job's
        supervision must go on; the next commit takes them along). If the database stays
        away, the jobs ahead are recovered when their lease runs out, and the held results
        from the journal."""
        if not self._held and not self._ahead:
            return
        give_back = list(self._ahead)
        records = [record for _, record, _ in self._held]
        job = self._held[0][0] if self._held else give_back[0]
        clear = self._journal.clear_with_commit(running=once) if self._journal else None
        def settle():
            return self.store.record_batch(records, self.identity, self.clock(),
                                           self.settings["lease-seconds"], claim=0,
                                           give_back=give_back, clear_journal=clear)
        outcome = settle() if once else self._durably(job, settle)
        if outcome is GAVE_UP:
            self._ahead.clear()
            return
        assert isinstance(outcome, tuple)
        results, _ = outcome
        self._committed(results, give_back, [], running=once, cleared=clear is not None)

    def maintain(self, now: float, force: bool = False) -> None:
        """Every MAINTENANCE_SECONDS (heartbeat-seconds if shorter): reread settings, honour
        `worker stop`, recover lost jobs; every heartbeat-seconds, also heartbeat our row."""
        every = min(MAINTENANCE_SECONDS, self.settings["heartbeat-seconds"])
        if not force and not _due(now, self._last_maintenance, every):
            return
        self._last_maintenance = now
        self._flush_journal()
        self.settings = self.store.settings()
        self._check_stop_flag(now)
        # Every heartbeat-seconds, not every maintenance: a write wakes every idle worker on
        # the queue (they watch for commits), where the reads of maintenance wake nobody.
        if _due(now, self._last_heartbeat, self.settings["heartbeat-seconds"]):
            self._heartbeat(now)
        self.recover(now)
        self._apply_retention(now)
        if self._journal is None and self._journal_wanted and self.store.db.dialect != "sqlite":
            # Its last write failed, and the database answers again (this pass got here).
            # A SQLite journal that failed has a full disk, or worse: batches stay off.
            self.use_journal()

    def _apply_retention(self, now: float) -> None:
        keep = self.settings["retention"]
        if not keep or not _due(now, self._last_retention, RETENTION_EVERY_SECONDS):
            return
        self._last_retention = now
        deleted = self.store.purge(["completed", "cancelled"], before=now - keep)
        if deleted:
            self._say(f"retention: deleted {deleted} finished job(s) older than {keep:g}s")

    def recover(self, now: float) -> None:
        dead_here = [
            w["id"]
            for w in self.store.workers_on_host(self.identity.host)
            if w["id"] != self.identity.id and not process_alive(w["pid"], w["pid_started"])
        ]
        journal_of = self.store.journal_entries  # PostgreSQL: journal_table.py
        if self.store.db.dialect == "sqlite":
            queue_file = self._queue_file()
            def read_journal_file(worker_id: str):
                return journal.read(journal_path(queue_file, worker_id))
            journal_of = read_journal_file
        for job, state in self.store.recover_lost(
            now, self.settings, dead_worker_ids=dead_here, stop_leftovers=self._stop_leftovers,
            journal_of=journal_of,
        ):
            self._say(f"recovered job {job.id} from a lost worker ({job.worker_id}): now {state}")
        for worker_id in dead_here:
            self.store.unregister_worker(worker_id)
            # Its journal goes once none of its jobs is left: one that another worker took
            # over and did not finish (killed in between) still needs it, found by lease.
            if self.store.db.dialect == "sqlite" and not self.store.jobs_of_worker(worker_id):
                journal.discard(journal_path(self._queue_file(), worker_id))
        self.store.forget_dead_workers(now - 3 * self.settings["lease-seconds"])

    def _stop_leftovers(self, job: Job) -> None:
        """Kill what remains of a lost run, if it ran on this host; others' hosts have their
        own guardian (see watchdog.py)."""
        if job.host != self.identity.host:
            return
        if job.pgid:
            groups = {job.pgid} if is_same_group(job.pgid, job.pgid_started) else set()
        else:  # lost in its first moments, before _supervise wrote its group
            groups = groups_of_run(job.id, job.runs)
        for pgid in sorted(groups):
            self._say(f"killing leftover processes of job {job.id} (group {pgid})")
            kill_group(pgid, grace=1.0)

    def _mark_stopping(self) -> None:
        """Show a stop that came by signal (Ctrl-C, SIGTERM, a hang-up) in `status` and the
        dashboard, as `worker stop` does: a warm stop may wait long on the running job, and
        whoever watches from elsewhere should see why this worker takes no more."""
        self._marked_stopping = True
        self._guarded(lambda: self.store.mark_stopping(self.identity.id))

    def _heartbeat(self, now: float) -> None:
        self.store.worker_heartbeat(self.identity.id, now)
        self._last_heartbeat = now

    def _check_stop_flag(self, now: float) -> None:
        flag = self.store.stop_requested(self.identity.id)
        if flag is None:  # forgotten as dead while we were frozen: we are alive, say so
            self.store.register_worker(self.identity, now)
        elif flag and self.stops.level == RUNNING:  # said once: the flag stays set till we exit
            self._say("stop requested by 'queuectl worker stop'")
            self.stops.request(WARM)

    # -- running one job --------------------------------------------------------------------

    def execute(self, job: Job) -> bool:
        """Run a claimed job and record how it ended. False when it was not started: the
        journal could not note its start first, and it was given back (_write_journal)."""
        started = time.monotonic()
        self._lease_until = started + self.settings["lease-seconds"]
        # When it really started, for its attempt's record: a job claimed ahead in a batch
        # was claimed a little earlier.
        job.started_at = started_at = self.clock()
        journal_file = self._journal
        if journal_file is not None and not self._write_journal(
                lambda: journal_file.started(job, started_at), not_started=job):
            return False  # given back unstarted, with the rest of its batch
        self._say(f"job {job.id} started (run {job.runs}): {job.command}")
        try:
            running = RunningJob(job.command, cwd=job.cwd, env=self._job_env(job),
                                 output_limit=self.settings["output-limit"])
        except StartFailed as exc:
            self._record_failure(job, 127, str(exc))
            return True
        if self.watchdog is not None:
            self.watchdog.job_started(running.pgid)
        try:
            ended_by = self._supervise(job, running, started)
        finally:
            if self.watchdog is not None:
                self.watchdog.job_ended(running.pgid)
        if ended_by is not None:
            return True
        exit_code, error = describe_exit(running.returncode or 0)
        elapsed = time.monotonic() - started
        if error is None:
            finished_at = self.clock()
            done = f"job {job.id} completed in {elapsed:.2f}s"
            record = lambda: self.store.complete(job, finished_at, exit_code,  # noqa: E731
                                                 output=running.output)
            short = elapsed < HOLD_SECONDS and running.output.total <= HOLD_OUTPUT_BYTES \
                and not running.output.dropped
            if short and self._hold(job, record, done, finished_at, running.output):
                return True
            recorded = self._record(job, record, short=short)
            self._report(recorded, done,
                         f"job {job.id} finished but was no longer ours; result discarded")
        else:
            last = running.output.last_line()
            self._record_failure(job, exit_code, error + (f": {last}" if last else ""),
                                 output=running.output)
        return True

    def _job_env(self, job: Job) -> dict[str, str]:
        """What the job learns about itself: which queue (so it can enqueue follow-up work
        with a plain `queuectl enqueue`), its id and its run number. Never a password:
        describe() leaves it out."""
        return {
            "QUEUECTL_DB": self._queue_for_jobs,
            "QUEUECTL_JOB_ID": job.id,
            "QUEUECTL_RUN": str(job.runs),
            **job.env,
        }

    def _supervise(self, job: Job, running: RunningJob, started: float) -> str | None:
        """Wait for the command while keeping the lease, storing its output as it comes and
        watching for a cold stop, a cancel, the timeout and a lost lease. Returns None when the
        command exited by itself, else what ended it (already recorded)."""
        # The process group goes to the database only once the job has run for a moment
        # (at the first cancel check): most jobs are short, and this write would be a third
        # of their commits. Until then only the guardian knows it; see DECISIONS.md 23.
        process_recorded = False
        now_mono = time.monotonic()
        self._lease_until = now_mono + self.settings["lease-seconds"]
        next_beat = now_mono + self.settings["heartbeat-seconds"]
        next_flush = now_mono + OUTPUT_FLUSH_SECONDS
        next_cancel_check = now_mono + CANCEL_CHECK_SECONDS
        timeout = job.timeout or self.settings["job-timeout"] or None
        deadline = started + timeout if timeout else None
        # No changed() here to start the cancel checks afresh: the first check then asks the
        # database once whether a cancel came (commits surely happened since the last look),
        # and a job shorter than CANCEL_CHECK_SECONDS costs nothing.
        while running.poll() is None:
            wait = min(next_beat, next_flush, next_cancel_check) - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            running.pump(timeout=wait, wake_fds=(self.stops.wake_fd,))
            self.stops.drain()
            if running.poll() is not None:
                break
            # Warm only: a cold stop kills the job at once and must not wait on a write first.
            if self.stops.level == WARM and not self._marked_stopping:
                self._mark_stopping()
            now_mono = time.monotonic()
            if self.stops.level == COLD:
                running.kill()
                released = self._durably(job, lambda: self.store.release(
                    job, self.clock(), "released by a cold stop of its worker",
                    output=running.output))
                self._report(released,
                             f"job {job.id} killed by cold stop and put back (not charged)",
                             f"job {job.id} killed by cold stop; it was no longer ours, "
                             "nothing recorded")
                return "cold"
            if deadline is not None and now_mono >= deadline:
                running.kill()
                self._record_failure(job, 124, f"timed out after {timeout:g}s",
                                     outcome="timeout", output=running.output)
                return "timeout"
            if now_mono >= next_cancel_check:
                next_cancel_check = now_mono + CANCEL_CHECK_SECONDS
                if not process_recorded:
                    process_recorded = True
                    # No longer a short job: the batch it came in is recorded and given back
                    # now, not after it, and the next claims take one job at a time.
                    self._batch_size = 1
                    self._guarded(lambda: self._settle(once=True))
                    self._guarded(lambda: self.store.set_process(job, running.pgid,
                                                                 running.stamp()))
                if self.store.db.changed() and self._cancel_requested(job):
                    exit_code = describe_exit(running.kill())[0]
                    cancelled = self._durably(job, lambda: self.store.finish_cancelled(
                        job, self.clock(), exit_code, output=running.output))  # noqa: B023
                    self._report(cancelled,
                                 f"job {job.id} cancelled while running; killed its processes",
                                 f"job {job.id} cancelled while running and killed; it was no "
                                 "longer ours, nothing recorded")
                    return "cancelled"
            if now_mono >= next_flush:
                next_flush = now_mono + OUTPUT_FLUSH_SECONDS
                self._guarded(lambda: self.store.store_output(job, running.output))
            if now_mono >= next_beat:
                next_beat = now_mono + self.settings["heartbeat-seconds"]
                if not self._renew(job):
                    running.kill(grace=0.5)
                    self._say(f"job {job.id} lost its lease (another worker took it over); "
                              "killed it and recorded nothing")
                    return "lost"
                # A busy worker still recovers others' lost jobs: with every worker on long
                # jobs, nobody else would until one of them finished.
                self._guarded(lambda: self.maintain(self.clock()))
        running.finish()
        return None

    def _report(self, outcome: object, recorded: str, not_ours: str) -> None:
        """Say how recording a result went: `recorded` when it landed, `not_ours` when the
        store refused it (another worker had taken the job over); nothing after GAVE_UP, as
        _durably has said why."""
        if outcome is not GAVE_UP:
            self._say(recorded if outcome else not_ours)

    def _guarded(self, action: Callable[[], object]) -> None:
        """A side task (output flush, the process group) that must not kill the job when the
        database hiccups."""
        try:
            action()
        except QueueError as exc:
            self._say(f"could not write to the database yet ({exc}); will retry")

    def _cancel_requested(self, job: Job) -> bool:
        """Whether a cancel was asked for. A database that cannot answer has not asked: the
        job keeps running (the next check asks again), as it does through a failed heartbeat."""
        try:
            return self.store.cancel_requested(job)
        except QueueError as exc:
            self._say(f"could not check job {job.id} for a cancel ({exc}); will retry")
            return False

    def _renew(self, job: Job) -> bool:
        try:
            now = self.clock()
            self._heartbeat(now)
            renewed = self.store.renew_lease(job, now, self.settings["lease-seconds"])
        except QueueError as exc:
            self._say(f"heartbeat failed ({exc}); keeping the job and trying again")
            return True
        if renewed:
            self._lease_until = time.monotonic() + self.settings["lease-seconds"]
        return renewed

    def _hold(self, job: Job, record: Callable[[], object], done: str, finished_at: float,
              output) -> bool:
        """Hold back a short job's result for its batch's commit (written to the journal
        first), if its batch goes on: another job of it is claimed and still good to start.
        False when the result must be recorded now."""
        if (self._journal is None or not self._ahead or self.stops.level != RUNNING
                or self._paused() or time.monotonic() >= self._ahead_good_until):
            return False
        printed = bytes(output.head) + bytes(output.tail)
        if not self._write_journal(lambda: self._journal.ended(  # type: ignore[union-attr]
                job, job.started_at or finished_at, finished_at, 0, printed)):
            return False
        self._held.append((job, record, done))
        return True

    def _flush_journal(self) -> None:
        """Before database work that comes between a held job's end and the next start: its
        result waits for that start to travel with it (journal_table.py)."""
        journal_file = self._journal
        if journal_file is not None and self._held:
            self._write_journal(journal_file.flush)

    def _write_journal(self, write: Callable[[], None], not_started: Job | None = None) -> bool:
        """A journal that cannot be written ends batches: what it holds is recorded now, the
        jobs claimed ahead go back (`not_started` too: the job whose start it failed to note),
        and every job after that is recorded on its own. For good on SQLite (a full disk); a
        PostgreSQL worker tries again at its next maintenance (use_journal)."""
        try:
            write()
            return True
        except (OSError, QueueError) as exc:
            self._say(f"could not write the journal ({exc}); recording every job on its own")
        journal_file, self._journal = self._journal, None  # first: _settle writes no more
        self._batch_size = 1
        if not_started is not None:
            # Not run unjournaled: its claim may be old (the settle below may wait out an
            # outage), and another worker may have taken it over meanwhile.
            self._ahead.appendleft(not_started)
        self._settle()
        if journal_file is not None:
            try:  # kept while it holds results that could not be recorded (a stop gave up)
                journal_file.close(remove=not self._held)
            except (OSError, QueueError):
                pass
        return False

    def _record(self, job: Job, record: Callable[[], object], short: bool = False) -> object:
        """Record a run's result as _durably does, with the results held back (one commit for
        the batch), and when the worker goes on working and has nothing claimed ahead, claim
        its next jobs in the same transaction (kept in self._ahead for run_once): as many as
        the batch size, which doubles after each `short` job up to BATCH_MOST and is back to
        one after any other. A stopping or pausing worker gives back what it claimed ahead."""
        going_on = self.stops.level == RUNNING and not self._paused()
        if self._journal is not None:
            self._batch_size = min(self._batch_size * 2, BATCH_MOST) if short else 1
        # No changed() before this claim (run_once notes the version before its own): when
        # this one finds nothing, run_once notes the version and claims once more before the
        # worker waits, so a job committed meanwhile is never left to poll-seconds.
        claim = self._batch_size if going_on and not self._ahead else 0
        give_back = [] if going_on else list(self._ahead)
        records = [held for _, held, _ in self._held] + [record]
        clear = self._journal.clear_with_commit() if self._journal else None
        claimed_from = time.monotonic()
        outcome = self._durably(job, lambda: self.store.record_batch(
            records, self.identity, self.clock(), self.settings["lease-seconds"], claim=claim,
            give_back=give_back, clear_journal=clear))
        if outcome is GAVE_UP:  # nothing was recorded, nothing claimed
            self._ahead.clear()  # left to lease expiry; the journal keeps what was held
            return GAVE_UP
        assert isinstance(outcome, tuple)  # for the type checker: not GAVE_UP, so the pair
        results, claimed = outcome
        if claimed:  # the jobs ahead have no heartbeat: gone long before their lease
            self._ahead_good_until = claimed_from + min(BATCH_SECONDS,
                                                        self.settings["lease-seconds"] / 2)
            # The claims read the stop flag, inside the transaction.
            self._stop_flag_fresh_until = claimed_from + AHEAD_STOP_CHECK_SECONDS
        self._committed(results[:-1], give_back, claimed, cleared=clear is not None)
        return results[-1]

    def _committed(self, held_results: list, given_back: list[Job], claimed: list[Job],
                   running: bool = False, cleared: bool = False) -> None:
        """After a commit that recorded the held results (and maybe gave back or claimed),
        and `cleared` the journal's lines with them (a PostgreSQL journal, in the same
        transaction)."""
        for (job, _, done), recorded in zip(self._held, held_results, strict=True):
            self._report(recorded, done,
                         f"job {job.id} finished but was no longer ours; result discarded")
        self._held.clear()
        journal_file = self._journal
        if journal_file is not None:
            self._write_journal(lambda: journal_file.committed(running=running,
                                                               cleared=cleared))
        if given_back:
            self._ahead.clear()
        self._ahead.extend(claimed)

    def _durably(self, job: Job, record: Callable[[], object]) -> object:
        """Record a run's result, retrying through a database outage. Every write of a result
        is fenced by the claim's token, so trying past our lease is safe: once the database is
        back the result lands if no other worker took the job over meanwhile, and is refused if
        one did. So a worker that is not stopping keeps trying (a job that ran is not run
        again just because the outage outlasted the lease); a stopping worker gives up once
        the lease is over, says so, and returns GAVE_UP: the job is recovered and run again
        (at-least-once). Otherwise returns what `record` returned."""
        delay, said_late = 0.25, False
        trying_since = time.monotonic()
        remind_at = trying_since + STILL_TRYING_EVERY_SECONDS
        while True:
            try:
                return record()
            except QueueError as exc:
                now_mono = time.monotonic()
                late = now_mono + delay > self._lease_until
                if late and self.stops.level != RUNNING:
                    self._say(f"could not record the result of job {job.id} before its lease "
                              f"ran out ({exc}); it will be recovered and run again")
                    return GAVE_UP
                if late and not said_late:
                    said_late = True
                    self._say(f"job {job.id}'s lease runs out before its result could be "
                              f"recorded ({exc}); still trying: it lands unless another "
                              "worker has taken the job over")
                elif late and now_mono >= remind_at:
                    # The database may refuse for good (disk full, a broken file): this
                    # worker does nothing else meanwhile, and its operator must hear of it
                    # more than once. A warm stop ends the wait (the job is recovered).
                    remind_at = now_mono + STILL_TRYING_EVERY_SECONDS
                    self._say(f"still trying to record the result of job {job.id}, for "
                              f"{now_mono - trying_since:.0f}s now ({exc}); this worker runs "
                              "nothing else meanwhile; stopping it (SIGTERM, Ctrl-C) gives up, and "
                              "the job is recovered and run again")
                elif not late:
                    self._say(f"could not record the result of job {job.id} yet ({exc}); "
                              f"retrying in {delay:g}s")
                self._sleep(delay)
                delay = min(delay * 2, 2.0)

    def _record_failure(self, job: Job, exit_code: int | None, error: str,
                        outcome: str = "failed", output=None) -> None:
        state = self._record(job, lambda: self.store.fail(
            job, self.clock(), self.settings, exit_code, error, outcome, output=output,
            draw=random.random()))
        if state is GAVE_UP:
            return
        if state is None:
            self._say(f"job {job.id} failed but was no longer ours; result discarded")
        elif state == "dead":
            self._say(f"job {job.id} failed ({error}); no retries left: moved to the DLQ")
        else:
            self._say(f"job {job.id} failed ({error}); retry {job.attempts + 1}/"
                      f"{job.max_retries} scheduled")

    # -- waiting ----------------------------------------------------------------------------

    def _idle_wait(self) -> None:
        """Sleep until something changed in the database, a signal came, or poll-seconds
        passed (jobs scheduled for later become due without any commit). Where the database
        offers a descriptor that wakes on change (inotify on SQLite's WAL, the LISTEN socket
        on PostgreSQL), block on it; else ask every IDLE_CHECK_SECONDS."""
        give_up = time.monotonic() + self.settings["poll-seconds"]
        polling_until = 0.0
        pause = IDLE_CHECK_SECONDS
        while self.stops.level == RUNNING:
            now = time.monotonic()
            left = give_up - now
            if left <= 0:
                return
            change_fd = self.store.db.change_fd()
            if change_fd is None or now < polling_until:
                self._sleep(min(pause, left))
                pause = min(pause * 2, IDLE_CHECK_SECONDS)
            else:
                self._sleep(left, change_fd)
                # A SQLite writer's last write to the WAL file comes before its commit is
                # visible (it still syncs, then publishes in shared memory, which makes no
                # event): after a wake, keep asking for a while instead of waiting again,
                # soon at first (a sync takes milliseconds), then every IDLE_CHECK_SECONDS.
                polling_until = time.monotonic() + SETTLE_SECONDS
                pause = SETTLE_FIRST_PAUSE
            if self.store.db.changed():
                return

    def _sleep(self, seconds: float, *also: int) -> None:
        """Sleep up to `seconds`; a signal, or any of the `also` descriptors, ends it early."""
        try:
            select.select([self.stops.wake_fd, *also], [], [], seconds)
        except InterruptedError:
            pass
        self.stops.drain()

    def _say(self, message: str) -> None:
        if self.verbose:
            log(self.identity.id, message)
