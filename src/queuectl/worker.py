"""One worker: claim a job, run it, record the outcome; heartbeat its lease while it runs.

`run_once(now)` is one step of the loop with the clock passed in, so tests can drive it.
"""

from __future__ import annotations

import os
import select
import secrets
import socket
import time
from collections.abc import Callable

from queuectl.errors import QueueError
from queuectl.log import log
from queuectl.models import Job
from queuectl.processes import is_same_group, kill_group, start_stamp
from queuectl.runner import RunningJob, StartFailed, describe_exit
from queuectl.stopping import COLD, RUNNING, WARM, StopRequests
from queuectl.store import JobStore, WorkerIdentity
from queuectl.watchdog import Watchdog

IDLE_CHECK_SECONDS = 0.02  # how often an idle worker asks SQLite whether anything changed
MAINTENANCE_SECONDS = 2.0  # recovery scan and stop-flag check, at the latest this often


def new_identity(queues: list[str] | None = None) -> WorkerIdentity:
    host = socket.gethostname()
    pid = os.getpid()
    return WorkerIdentity(
        id=f"{host}:{pid}:{secrets.token_hex(2)}",
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
        clock: Callable[[], float] = time.time,
        verbose: bool = True,
    ):
        self.store = store
        self.identity = identity
        self.stops = stops or StopRequests()
        self.watchdog = watchdog
        self.clock = clock
        self.verbose = verbose
        self.settings = store.settings()
        self._next_heartbeat = 0.0
        self._next_maintenance = 0.0
        self.jobs_done = 0

    # -- lifecycle --------------------------------------------------------------------------

    def run(self, burst: bool = False) -> int:
        """Work until asked to stop. Exit status: 0 after a warm stop, 1 after a cold one."""
        self.store.register_worker(self.identity, self.clock())
        self._say(f"started (pid {self.identity.pid}) on {self.store.describe()}")
        try:
            while self.stops.level == RUNNING:
                try:
                    worked = self.run_once(self.clock())
                except QueueError as exc:
                    self._say(f"database error, retrying in 1s: {exc}")
                    self._sleep(1.0)
                    continue
                if not worked:
                    if burst:
                        break
                    self._idle_wait()
        finally:
            try:
                self.store.unregister_worker(self.identity.id)
            except QueueError:
                pass
            if self.watchdog is not None:
                self.watchdog.close()
        how = "cold" if self.stops.level == COLD else "warm"
        self._say(f"stopped ({how}) after {self.jobs_done} jobs")
        return 1 if self.stops.level == COLD else 0

    def run_once(self, now: float) -> bool:
        """Maintenance if due, then claim and run at most one job. True if a job ran."""
        self.maintain(now)
        # Maintenance is due only every few seconds, but `worker stop` promises that no job
        # starts once it asked: read the flag before every claim (one primary-key read).
        if self.stops.level == RUNNING:
            self._check_stop_flag(now)
        if self.stops.level != RUNNING:
            return False
        job = self.store.claim(self.identity, now, self.settings["lease-seconds"])
        if job is None:
            return False
        self.execute(job)
        self.jobs_done += 1
        return True

    def maintain(self, now: float, force: bool = False) -> None:
        """Heartbeat our row, reread settings, honour `worker stop`, recover lost jobs."""
        if not force and now < self._next_maintenance:
            return
        self._next_maintenance = now + min(MAINTENANCE_SECONDS, self.settings["heartbeat-seconds"])
        self.settings = self.store.settings()
        self._check_stop_flag(now)
        self.store.worker_heartbeat(self.identity.id, now)
        self.recover(now)

    def recover(self, now: float) -> None:
        dead_here = [
            w["id"]
            for w in self.store.workers_on_host(self.identity.host)
            if w["id"] != self.identity.id and not _process_alive(w["pid"], w["pid_started"])
        ]
        for job, state in self.store.recover_lost(
            now, self.settings, dead_worker_ids=dead_here, stop_leftovers=self._stop_leftovers
        ):
            self._say(f"recovered job {job.id} from a lost worker ({job.worker_id}): now {state}")
        for worker_id in dead_here:
            self.store.unregister_worker(worker_id)
        self.store.forget_dead_workers(now - 3 * self.settings["lease-seconds"])

    def _stop_leftovers(self, job: Job) -> None:
        """Kill what remains of a lost run, if it ran on this host; others' hosts have their
        own guardian (see watchdog.py)."""
        if job.host == self.identity.host and job.pgid and is_same_group(job.pgid,
                                                                          job.pgid_started):
            self._say(f"killing leftover processes of job {job.id} (group {job.pgid})")
            kill_group(job.pgid, grace=1.0)

    def _check_stop_flag(self, now: float) -> None:
        flag = self.store.stop_requested(self.identity.id)
        if flag is None:  # forgotten as dead while we were frozen: we are alive, say so
            self.store.register_worker(self.identity, now)
        elif flag:
            self._say("stop requested by 'queuectl worker stop'")
            self.stops.request(WARM)

    # -- running one job --------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        self._say(f"job {job.id} started (run {job.runs}): {job.command}")
        started = time.monotonic()
        try:
            running = RunningJob(job.command, cwd=job.cwd, env=job.env)
        except StartFailed as exc:
            self._record_failure(job, 127, str(exc))
            return
        if self.watchdog is not None:
            self.watchdog.job_started(running.pgid, running.pgid_started)
        try:
            outcome = self._supervise(job, running, started)
        finally:
            if self.watchdog is not None:
                self.watchdog.job_ended(running.pgid)
        if outcome is not None:
            return
        exit_code, error = describe_exit(running.returncode or 0)
        elapsed = time.monotonic() - started
        if error is None:
            if self.store.complete(job, self.clock(), exit_code):
                self._say(f"job {job.id} completed in {elapsed:.2f}s")
            else:
                self._say(f"job {job.id} finished but was no longer ours; result discarded")
        else:
            last = running.output.last_line()
            self._record_failure(job, exit_code, error + (f": {last}" if last else ""))

    def _supervise(self, job: Job, running: RunningJob, started: float) -> str | None:
        """Wait for the command while keeping the lease. Returns None when it exited by itself,
        or what ended it otherwise ('cold', 'lost', 'timeout', already recorded)."""
        self.store.set_process(job, running.pgid, running.pgid_started)
        next_beat = time.monotonic() + self.settings["heartbeat-seconds"]
        deadline = started + job.timeout if job.timeout else None
        while running.poll() is None:
            now_mono = time.monotonic()
            wait = next_beat - now_mono
            if deadline is not None:
                wait = min(wait, deadline - now_mono)
            running.pump(timeout=min(wait, 1.0), wake_fds=(self.stops.wake_fd,))
            self.stops.drain()
            if running.poll() is not None:
                break
            if self.stops.level == COLD:
                running.kill()
                self.store.release(job, self.clock(), "released by a cold stop of its worker")
                self._say(f"job {job.id} killed by cold stop and put back (not charged)")
                return "cold"
            now_mono = time.monotonic()
            if deadline is not None and now_mono >= deadline:
                running.kill()
                self._record_failure(job, 124, f"timed out after {job.timeout:g}s",
                                     outcome="timeout")
                return "timeout"
            if now_mono >= next_beat:
                next_beat = now_mono + self.settings["heartbeat-seconds"]
                if not self._renew(job):
                    running.kill(grace=0.5)
                    self._say(f"job {job.id} lost its lease (another worker took it over); "
                              "killed it and recorded nothing")
                    return "lost"
        running.finish()
        return None

    def _renew(self, job: Job) -> bool:
        try:
            now = self.clock()
            self.store.worker_heartbeat(self.identity.id, now)
            return self.store.renew_lease(job, now, self.settings["lease-seconds"])
        except QueueError as exc:
            self._say(f"heartbeat failed ({exc}); keeping the job and trying again")
            return True

    def _record_failure(self, job: Job, exit_code: int | None, error: str,
                        outcome: str = "failed") -> None:
        state = self.store.fail(job, self.clock(), self.settings, exit_code, error, outcome)
        if state is None:
            self._say(f"job {job.id} failed but was no longer ours; result discarded")
        elif state == "dead":
            self._say(f"job {job.id} failed ({error}); no retries left: moved to the DLQ")
        else:
            delay = self.settings["backoff-base"] ** (job.attempts + 1)
            self._say(f"job {job.id} failed ({error}); retry {job.attempts + 1}/"
                      f"{job.max_retries} in {delay:g}s")

    # -- waiting ----------------------------------------------------------------------------

    def _idle_wait(self) -> None:
        """Sleep until something changed in the database, a signal came, or poll-seconds
        passed (jobs scheduled for later become due without any commit)."""
        give_up = time.monotonic() + self.settings["poll-seconds"]
        self.store.db.changed()
        while self.stops.level == RUNNING and time.monotonic() < give_up:
            self._sleep(IDLE_CHECK_SECONDS)
            if self.store.db.changed():
                return

    def _sleep(self, seconds: float) -> None:
        try:
            select.select([self.stops.wake_fd], [], [], seconds)
        except InterruptedError:
            pass
        self.stops.drain()

    def _say(self, message: str) -> None:
        if self.verbose:
            log(self.identity.id, message)


def _process_alive(pid: int, recorded_stamp: str | None) -> bool:
    stamp = start_stamp(pid)
    if stamp is None:
        return False
    return recorded_stamp is None or stamp == recorded_stamp
