"""Stop requests by signal. Handlers only record what was asked; the worker loop acts on it.

Doing the work inside a handler would run it at an arbitrary point of the loop (in the middle
of a database transaction, say); a flag read at well-defined points cannot. A self-pipe given
to signal.set_wakeup_fd wakes the loop's select() at once, so reacting costs no polling.

First SIGINT/SIGTERM: warm stop (finish the running job, claim nothing new). Second: cold stop
(kill the running job's process group and put the job back without charging an attempt).
Only the supervisor counts them. SIGUSR1 and SIGUSR2 are what it forwards: "at least warm" and
"cold", idempotent both. A worker takes SIGINT and SIGTERM as "at least warm" too
(`counting=False`), because one signal often reaches it twice: directly and forwarded. A
terminal's Ctrl-C signals the whole foreground group, and `pkill`, `kill -TERM -PGID` or
systemd's default stop signal every process. A worker that counted both saw two signals
whenever the forward came first, and Python runs pending handlers in signal-number order, so
SIGUSR1 (10) always ran before a SIGTERM (15) that was pending with it: a single SIGTERM to
the group killed running jobs as a cold stop.

SIGHUP, a terminal's hang-up (its window closed, an ssh connection dropped), is a warm stop
however often it comes: nobody is left to ask for a cold one, and the shell passes its own
SIGHUP on to the jobs it started, so one hang-up may arrive twice. Left to its default action it
killed every worker mid-job: running jobs were charged a crash and run again. A process started
with SIGHUP ignored (`nohup queuectl worker start`) keeps ignoring it, as asked.
"""

from __future__ import annotations

import os
import signal

RUNNING, WARM, COLD = 0, 1, 2
_COUNTED = -1  # a SIGINT or SIGTERM that counts: one is a warm stop, two a cold one
# What install() handles: blocked while a worker is forked, until its handlers are in place.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Read when this module is first imported, before any handler of ours: the supervisor's workers,
# forked after it installed its own, inherit the answer rather than asking again.
HANGUP_IGNORED_AT_START = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


class StopRequests:
    """What was asked so far, as `level`. The handlers only ever append to a list: Python may
    run one handler in the middle of another (a signal that arrives while a handler runs is
    handled at the next instruction), and a handler that read the level, then wrote it back,
    could undo what the other wrote meanwhile. It did: a worker whose "at least warm" handler
    for a group's second Ctrl-C was interrupted by the supervisor's "cold" wrote back warm, and
    its job ran on through a cold stop (chaos scenario 5, about one run in two)."""

    def __init__(self) -> None:
        self._heard: list[int] = []  # appended by handlers only: WARM, COLD or _COUNTED
        self._requested = RUNNING  # by the program itself (request), never by a handler
        self.hung_up = False  # the stop came from a hang-up, not from anyone asking
        self.wake_fd, self._write_fd = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._write_fd, False)

    @property
    def level(self) -> int:
        heard = self._heard
        if not heard:
            return self._requested
        counted = heard.count(_COUNTED)
        if counted and WARM in heard:  # a stop already asked for (a hang-up): this is the second
            counted += 1
        return max(self._requested, min(counted, COLD), *heard)

    def install(self, counting: bool = True) -> StopRequests:
        """Handle the stop signals from now on. `counting`: a second SIGINT or SIGTERM makes a
        cold stop (the supervisor); without, each is "at least warm" (its workers)."""
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        asked = self._counted if counting else self._warm
        signal.signal(signal.SIGINT, asked)
        signal.signal(signal.SIGTERM, asked)
        signal.signal(signal.SIGUSR1, self._warm)
        signal.signal(signal.SIGUSR2, self._cold)
        if not HANGUP_IGNORED_AT_START:
            signal.signal(signal.SIGHUP, self._hang_up)
        return self

    def _counted(self, signum, frame) -> None:
        self._heard.append(_COUNTED)

    def _warm(self, signum, frame) -> None:
        self._heard.append(WARM)

    def _hang_up(self, signum, frame) -> None:
        self.hung_up = True
        self._heard.append(WARM)

    def _cold(self, signum, frame) -> None:
        self._heard.append(COLD)

    def request(self, level: int) -> None:
        self._requested = max(self._requested, level)

    def stop_with_parent(self, parent_pid: int) -> bool:
        """Make the death of `parent_pid`, this process's parent (the supervisor), a warm stop.

        A supervisor killed outright (SIGKILL, the OOM killer, a crash of its own) used to
        leave its workers running as orphans: the shell got its prompt back while they went on
        claiming jobs, with nobody to restart them, no Ctrl-C reaching them, and a second
        `worker start` doubling their number. Linux's PR_SET_PDEATHSIG has the kernel send
        SIGUSR1 ("at least warm", as the supervisor's own forward) the moment the parent dies,
        with no polling. A parent gone before we asked is caught by comparing getppid. False
        where prctl is missing (not Linux): there an orphan works on until stopped."""
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            return False
        prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong)
        prctl.restype = ctypes.c_int
        if prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0) != 0:
            return False
        if os.getppid() != parent_pid:
            self.request(WARM)
        return True

    def drain(self) -> None:
        try:
            while os.read(self.wake_fd, 512):
                pass
        except (BlockingIOError, OSError):
            pass
