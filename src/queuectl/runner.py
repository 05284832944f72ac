"""Runs one job's command: its own session and process group, output drained as it comes,
and a kill that reaches every process the job started, not just `sh`."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

from queuectl.capture import OutputCapture
from queuectl.processes import group_alive, group_running, kill_group, start_stamp

KILL_GRACE_SECONDS = 2.0


class StartFailed(Exception):
    """The command could not be started at all (missing cwd, fork failure...)."""


def describe_exit(returncode: int) -> tuple[int, str | None]:
    """(exit code as a shell reports it, error text or None for success)."""
    if returncode == 0:
        return 0, None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return 128 - returncode, f"killed by {name}"
    if returncode == 127:
        return 127, "exit code 127 (command not found?)"
    return returncode, f"exit code {returncode}"


# The worker's QUEUECTL_DB may carry a database password; a job must not see it. The worker
# hands the job its own QUEUECTL_DB instead, without the password (see Worker.execute).
_PRIVATE_ENV = ("QUEUECTL_DB",)


def job_environment(extra: dict | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env.update(extra or {})
    return env


class RunningJob:
    def __init__(self, command: str, *, cwd: str | None = None, env: dict | None = None,
                 output_limit: int = 1 << 20):
        if cwd is not None and not os.path.isdir(cwd):
            raise StartFailed(f"working directory {cwd} does not exist")
        full_env = job_environment(env)
        try:
            self.proc = subprocess.Popen(
                command,
                shell=True,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, interleaved in the order written
                start_new_session=True,  # own session and group: killpg reaches every child
                close_fds=True,
            )
        except OSError as exc:
            raise StartFailed(f"could not start the command: {exc}") from None
        self.pgid = self.proc.pid
        self.pgid_started = start_stamp(self.pgid)
        self.output = OutputCapture(output_limit)
        self._out_fd: int | None = self.proc.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._out_fd, False)
        try:
            self._exit_fd: int | None = os.pidfd_open(self.pgid)
        except OSError:  # very old kernels: fall back to short polling
            self._exit_fd = None
        self.returncode: int | None = None

    def pump(self, timeout: float, wake_fds: tuple[int, ...] = ()) -> None:
        """Wait up to `timeout` for output, the command's exit, or a wake fd; take what came."""
        fds = [fd for fd in (self._out_fd, self._exit_fd) if fd is not None]
        if self._exit_fd is None:
            timeout = min(timeout, 0.05)
        try:
            ready, _, _ = select.select(fds + list(wake_fds), [], [], max(0.0, timeout))
        except InterruptedError:
            ready = []
        if self._out_fd is not None and self._out_fd in ready:
            self._read_available()
        self.poll()

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.proc.poll()
        return self.returncode

    def _read_available(self, max_reads: int = 16) -> None:
        """Read what the pipe holds, but at most max_reads * 64 KiB, so a job that prints
        without pause cannot keep the worker from its heartbeat."""
        assert self._out_fd is not None
        for _ in range(max_reads):
            try:
                chunk = os.read(self._out_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:  # EOF: every writer has closed the pipe
                self._close_output()
                return
            self.output.feed(chunk)
            if len(chunk) < 65536:
                return

    def _close_output(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._out_fd = None

    def finish(self) -> None:
        """After the command exited: stop anything it left in the background, take the
        rest of the output, and release the file descriptors."""
        if group_alive(self.pgid) and group_running(self.pgid):
            kill_group(self.pgid, KILL_GRACE_SECONDS)
        deadline = time.monotonic() + 1.0
        while self._out_fd is not None and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self._out_fd], [], [], 0.1)
            except InterruptedError:
                continue
            if ready:
                self._read_available(max_reads=1 << 20)
        if self._out_fd is not None:
            self._close_output()
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None

    def kill(self, grace: float = KILL_GRACE_SECONDS) -> int:
        """SIGTERM the whole group, SIGKILL after `grace`, and reap. Returns the exit status."""
        kill_group(self.pgid, grace, is_reaped=self.poll)
        self.returncode = self.proc.wait()
        self.finish()
        return self.returncode
