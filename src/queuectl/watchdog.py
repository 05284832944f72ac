"""A tiny guardian per worker process that kills the running job if the worker dies.

SIGKILL of a worker does not reach its job: the job runs in its own session, so it survives
and would keep running while another worker re-runs it. The guardian is forked before the
worker opens anything, moves to its own session (so a kill of the worker's process group
misses it), and holds the read end of a pipe. The worker writes "+pgid" when a job starts and
"-pgid" when it has ended. When the pipe reaches end-of-file, the worker is gone (however it
died), and the guardian kills the job group it was last told of, if that job had not ended,
then exits.

The guardian, not the worker, reads the job leader's start stamp (see processes.py), when it
reads "+pgid": reading it at once would block the worker until the job's exec is done. The
pid cannot name another process then, as the worker has not reaped it yet ("-pgid" comes
after the reap only when the job ended within the last POLL_SECONDS, and then it is ignored).
When the worker dies, the group is killed only if its leader still has that stamp, or, if the
leader is gone, while other members keep the group id reserved.

Cheap on the hot path and when idle. While jobs come and go, the guardian does not block on the
pipe (every write would wake it, a context switch per job): it sleeps and reads what came
every POLL_SECONDS, so it notices its worker's death at most that late. Once a look finds
nothing new (an idle worker, or one long job), it blocks on the pipe instead: no wake-ups at
all until the next message or the end-of-file, which it then sees at once (DECISIONS.md 28).
"""

from __future__ import annotations

import os
import select
import signal
import time

from queuectl.processes import is_same_group, kill_group, start_stamp

POLL_SECONDS = 0.2


class Watchdog:
    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guardian
            os.close(write_fd)
            try:
                _guard(read_fd)
            finally:
                os._exit(0)
        os.close(read_fd)
        self.pid = pid
        self._fd: int | None = write_fd
        self._job_in_flight = False

    def job_started(self, pgid: int) -> None:
        self._job_in_flight = True
        self._send(f"+{pgid}\n")

    def job_ended(self, pgid: int) -> None:
        self._job_in_flight = False
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, line.encode())
            except OSError:  # guardian gone: the worker still works, only less guarded
                self.close()

    def close(self) -> None:
        """Let the guardian go. With no job in flight it has nothing left to guard and is
        ended at once: waiting for it to notice the closed pipe would add up to POLL_SECONDS
        to every worker's exit (a fifth of a second on each `worker start --burst`). With a
        job in flight (the worker is failing mid-job) it must see end-of-file and kill it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._job_in_flight:
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


def _guard(read_fd: int) -> None:
    os.setsid()
    # A terminal's Ctrl-C or hang-up is not for the guardian: it must outlive its worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in ("SIGUSR1", "SIGUSR2", "SIGCHLD"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    # Forked while the worker still blocks its stop signals (see Supervisor._spawn): the
    # SIGTERM that Watchdog.close sends must reach this process.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.set_blocking(read_fd, False)
    running: tuple[int, str | None] | None = None  # the job group in flight, with its stamp
    pending = b""
    heard = True
    while True:
        if heard:  # messages are coming: take them in batches
            time.sleep(POLL_SECONDS)
        else:  # quiet: wait for the next message or the worker's end, without waking
            select.select([read_fd], [], [])
        ended, heard = False, False
        while True:
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                ended = True
                break
            pending += data
            heard = True
        *lines, pending = pending.split(b"\n")
        # Only the last message counts: a "+" followed by its "-" in the same batch is a job
        # that came and went between two looks.
        if lines:
            sign, pgid = lines[-1][:1], int(lines[-1][1:])
            running = (pgid, start_stamp(pgid)) if sign == b"+" else None
        if ended:
            break
    if running is not None and is_same_group(*running):
        kill_group(running[0], grace=1.0)
