"""A tiny guardian per worker process that kills the running job if the worker dies.

SIGKILL of a worker does not reach its job: the job runs in its own session, so it survives
and would keep running while another worker re-runs it. The guardian is forked before the
worker opens anything, moves to its own session (so a kill of the worker's process group
misses it), and holds the read end of a pipe. The worker writes "+pgid stamp" when a job
starts and "-pgid" when it ends. When the pipe reaches end-of-file, the worker is gone (however
it died), and the guardian kills every job group still listed, then exits.
"""

from __future__ import annotations

import os
import signal

from queuectl.processes import is_same_group, kill_group


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

    def job_ended(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

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
    live: dict[int, str | None] = {}
    pending = b""
    while True:
        try:
            data = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            text = line.decode()
            if text.startswith("+"):
                pgid, _, stamp = text[1:].partition(" ")
                live[int(pgid)] = None if stamp == "-" else stamp
            elif text.startswith("-"):
                live.pop(int(text[1:]), None)
    for pgid, stamp in live.items():
        if is_same_group(pgid, stamp):
            kill_group(pgid, grace=1.0)
