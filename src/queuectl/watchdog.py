"""A tiny guardian per worker process that kills the running job if the worker dies.

SIGKILL of a worker does not reach its job: the job runs in its own session, so it survives
and would keep running while another worker re-runs it. The guardian is forked before the
worker opens anything, moves to its own session (so a kill of the worker's process group
misses it), and holds the read end of a pipe. The worker writes "+pgid stamp" when a job
starts and "-pgid" when it ends. When the pipe reaches end-of-file, the worker is gone (however
it died), and the guardian kills the last job group it was told of, if that group still runs
(checked by the leader's start time, so a finished job's reused pid is never hit), then exits.

Cheap on the hot path: one small write per job, and no wake-up for it. The guardian does not
block on the pipe (every write would wake it, a context switch per job); it sleeps and reads
what came every POLL_SECONDS, so it notices its worker's death at most that late.
"""

from __future__ import annotations

import os
import signal
import time

from queuectl.processes import is_same_group, kill_group

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

    def job_started(self, pgid: int, stamp: str | None) -> None:
        self._send(f"+{pgid} {stamp or '-'}\n")

    def _send(self, line: str) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, line.encode())
            except OSError:  # guardian gone: the worker still works, only less guarded
                self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


def _guard(read_fd: int) -> None:
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in ("SIGUSR1", "SIGUSR2", "SIGCHLD"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.set_blocking(read_fd, False)
    last: tuple[int, str | None] | None = None
    pending = b""
    while True:
        time.sleep(POLL_SECONDS)
        ended = False
        while True:
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                ended = True
                break
            pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            pgid, _, stamp = line.decode()[1:].partition(" ")
            last = (int(pgid), None if stamp == "-" else stamp)
        if ended:
            break
    if last is not None and is_same_group(*last):
        kill_group(last[0], grace=1.0)
