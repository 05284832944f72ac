"""`worker start --count N`: fork N worker processes, forward stop signals, restart crashes.

Each worker is its own process (not a thread): a job that kills its worker, or a crash in one,
takes down one worker, which the supervisor restarts, while the others keep going. Children
are forked before any database connection exists in them, and open their own. A worker
whose supervisor dies stops warmly (`StopRequests.stop_with_parent`): it does not live on as
an orphan nobody restarts or stops. Ctrl-Z stops the supervisor alone and pauses the workers
(pausing.py).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from queuectl.log import log
from queuectl.pausing import PauseSwitch, could_be_continued
from queuectl.stopping import COLD, RUNNING, STOP_SIGNALS, StopRequests
from queuectl.store import mask_password

RESTART_DELAYS = (0.5, 1, 2, 5, 10, 30)  # after consecutive crashes of one slot
HEALTHY_AFTER_SECONDS = 60.0
IDLE_WAKE_SECONDS = 10.0


def _child_main(db: str, burst: bool, queues: list[str] | None, verbose: bool,
                inherited: StopRequests | None = None,
                signal_mask: set | None = None, supervisor_pid: int | None = None,
                pause: PauseSwitch | None = None) -> int:
    # Imported here so the supervisor itself stays small; the child pays the import once.
    from queuectl.errors import QueueError
    from queuectl.heap import keep_freed_memory
    from queuectl.runner import close_inherited_fds, defaulted_signals
    from queuectl.store import open_store
    from queuectl.watchdog import Watchdog
    from queuectl.worker import Worker, new_identity

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Ctrl-Z is the supervisor's to act on (pausing.py): a worker that stopped would keep no
    # lease. Which signals jobs start with at their default action is worked out first, from
    # what this process inherited, so that jobs do not inherit these ignores.
    defaulted_signals()
    for terminal_stop in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(terminal_stop, signal.SIG_IGN)
    signal.signal(signal.SIGCONT, _wake)  # the supervisor's "resumed": wakes an idle wait
    keep_freed_memory()  # no heap shrink and regrowth, with its page faults, on every job
    close_inherited_fds()  # jobs must not get the descriptors the worker was started with
    watchdog = Watchdog()  # forked before any connection or job exists
    # Not counting: a signal that reaches the whole group comes to a worker twice, directly
    # and forwarded; the supervisor counts (see stopping.py).
    stops = StopRequests().install(counting=False)
    # A stop the supervisor had heard before the fork is in its StopRequests, copied with the
    # fork. One sent since waits, blocked (Supervisor._spawn), and arrives at our own handlers
    # as soon as we unblock it; the supervisor would otherwise wait for this worker forever.
    if inherited is not None:
        stops.request(inherited.level)
    if supervisor_pid is not None:  # its death arrives as SIGUSR1, so before the unblocking
        stops.stop_with_parent(supervisor_pid)
    if signal_mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
    try:
        store = open_store(db, durable=False)
    except QueueError as exc:
        log("worker", f"error: {exc}")
        watchdog.close()
        return 1
    try:
        return Worker(store, new_identity(queues), stops=stops, watchdog=watchdog,
                      pause=pause, verbose=verbose).run(burst=burst)
    finally:
        store.close()


def _wake(signum, frame) -> None:
    """A handler that does nothing: having one makes the signal wake the worker's select()
    through the wake-up descriptor (see stopping.py)."""


def _load_worker_modules() -> None:
    """Import what every worker needs once, here, before forking: each child then has it
    already (shared, copy-on-write) instead of importing it again, about 15 ms of CPU per
    worker, which `worker start --count 8 --burst` paid eight times before its first job.
    The database module itself (sqlite3, or psycopg) is loaded by the CLI's check that
    opens the store before forking. No connection is made here: children open their own."""
    import queuectl.filewatch  # noqa: F401
    import queuectl.heap  # noqa: F401
    import queuectl.runner  # noqa: F401
    import queuectl.watchdog  # noqa: F401
    import queuectl.worker  # noqa: F401

    try:
        import ctypes  # noqa: F401 - filewatch's inotify binding, loaded at the first idle wait
    except ImportError:  # a Python built without it: workers poll instead
        pass


class Supervisor:
    def __init__(self, db: str, count: int, *, burst: bool = False,
                 queues: list[str] | None = None, verbose: bool = True):
        self.db = db
        self.count = count
        self.burst = burst
        self.queues = queues
        self.verbose = verbose
        self.children: dict[int, int] = {}  # pid -> slot
        self.started_at: dict[int, float] = {}
        self.crashes = [0] * count
        self.restart_at: dict[int, float] = {}  # slot -> monotonic time
        self.failed = False
        self.stops: StopRequests | None = None  # set by run()
        self.pause = PauseSwitch()
        self._terminal_stops: list[int] = []  # appended by the SIGTSTP handler only

    def run(self) -> int:
        _load_worker_modules()
        stops = self.stops = StopRequests().install()
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # just wake the select
        # Ctrl-Z pauses (pausing.py), unless whoever started us asked for it to be ignored.
        if signal.getsignal(signal.SIGTSTP) != signal.SIG_IGN:
            signal.signal(signal.SIGTSTP, self._heard_terminal_stop)
        terminal_stops_handled = 0
        forwarded = RUNNING
        for slot in range(self.count):
            self._spawn(slot)
        self._say(f"started {self.count} worker process(es) on {mask_password(self.db)}; "
                  "Ctrl-C once to stop after the running jobs, twice to stop now; Ctrl-Z to pause")
        while self.children or (self.restart_at and stops.level == RUNNING):
            # Every event that needs the supervisor wakes it through the wake fd (a stop
            # signal, SIGCHLD); the timeout is only for restarts that come due, and a net.
            timeout = IDLE_WAKE_SECONDS
            if self.restart_at:
                timeout = max(0.0, min(self.restart_at.values()) - time.monotonic())
            try:
                select.select([stops.wake_fd], [], [], min(timeout, IDLE_WAKE_SECONDS))
            except InterruptedError:
                pass
            stops.drain()
            if len(self._terminal_stops) > terminal_stops_handled:
                self._pause_until_continued()
                # One pause per Ctrl-Z: a second one typed before the stop took effect is not
                # a reason to stop again at once after `fg`.
                terminal_stops_handled = len(self._terminal_stops)
            if stops.level > forwarded:
                forwarded = stops.level
                self._forward(signal.SIGUSR2 if forwarded == COLD else signal.SIGUSR1)
                self.restart_at.clear()
                # Say the signal was heard: a warm stop may wait long on a running job, and
                # a second signal sent before the first was taken merges with it (POSIX
                # does not queue them), so the user needs to know when to send it.
                if forwarded == COLD:
                    self._say("stopping now: killing the running jobs and putting them back")
                else:
                    self._say(("the terminal hung up (SIGHUP); " if stops.hung_up else "")
                              + "stopping: running jobs finish first; Ctrl-C again (or "
                              "another SIGTERM) to kill them and stop now")
            self._reap(stopping=stops.level != RUNNING)
            if stops.level == RUNNING:
                self._restart_due()
        self._say("all workers stopped")
        if stops.level == COLD:
            return 1
        return 1 if self.failed else 0

    def _heard_terminal_stop(self, signum, frame) -> None:
        self._terminal_stops.append(signum)

    def _pause_until_continued(self) -> None:
        """Ctrl-Z (or SIGTSTP): pause the workers, stop this process as the signal's default
        action would, and resume them once continued (`fg`, `bg`, SIGCONT). See pausing.py."""
        if not could_be_continued():
            self._say("SIGTSTP ignored: no shell could continue this process group (it was "
                      "started in a session of its own, as by setsid or a service manager); "
                      "'queuectl worker stop' or SIGTERM stops it")
            return
        self.pause.set(True)
        self._say("paused: running jobs go on and are recorded, no new job starts; "
                  "'fg' or 'bg' resumes")
        sys.stderr.flush()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGTSTP)  # returns once continued
        finally:
            signal.signal(signal.SIGTSTP, self._heard_terminal_stop)
            self.pause.set(False)
        self._forward(signal.SIGCONT)  # wake the idle workers: jobs may have come meanwhile
        self._say("resumed")

    def _spawn(self, slot: int) -> None:
        sys.stderr.flush()
        # The stop signals are blocked across the fork, and the child unblocks them once its
        # own handlers are in place. A signal that reached the child before Python's after-fork
        # code ran was discarded by that code (it clears the child's pending signal flags):
        # on a busy machine a child may not run at all until after the supervisor has
        # forwarded a stop, which its worker then never saw, and `worker start` never exited.
        # Blocked, the signal waits in the kernel instead.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        supervisor_pid = os.getpid()
        try:
            pid = os.fork()
        except BaseException:  # no child (out of processes): Ctrl-C must still reach us
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            code = 1
            try:
                code = _child_main(self.db, self.burst, self.queues, self.verbose, self.stops,
                                   mask, supervisor_pid, self.pause)
            except BaseException as exc:  # noqa: BLE001 - a child must never return into our loop
                log("worker", f"crashed: {exc!r}")
            finally:
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.children[pid] = slot
        self.started_at[pid] = time.monotonic()

    def _forward(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _reap(self, stopping: bool) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            lived = time.monotonic() - self.started_at.pop(pid, time.monotonic())
            code = os.waitstatus_to_exitcode(status)
            if code == 0:
                continue  # a clean stop (signal, `worker stop`, or --burst ran dry)
            if stopping:
                self.failed = True
                continue
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            if lived > HEALTHY_AFTER_SECONDS:
                self.crashes[slot] = 0
            delay = RESTART_DELAYS[min(self.crashes[slot], len(RESTART_DELAYS) - 1)]
            # Back off only from a worker that fails by itself (it cannot open the database, a
            # bug): restarting it at once would just fail again. A SIGKILL comes from outside
            # (the OOM killer, an operator, a job killing its worker, which max-crashes
            # bounds), says nothing about the next start, and a fork costs little; escalating
            # on it left slots empty for 30 s under repeated kills, and the queue without
            # workers to run or recover jobs (chaos suite, scenario 1).
            if code != -signal.SIGKILL:
                self.crashes[slot] += 1
            self._say(f"worker process {pid} died ({how}); restarting it in {delay:g}s")
            self.restart_at[slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[slot]
                self._spawn(slot)

    def _say(self, message: str) -> None:
        if self.verbose:
            log(f"supervisor {os.getpid()}", message)
