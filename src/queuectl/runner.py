"""Runs one job's command: its own session and process group, output drained as it comes,
and a kill that reaches every process the job started, not just `sh`."""

from __future__ import annotations

import os
import select
import signal
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
_base_env: dict[str, str] | None = None


def job_environment(extra: dict | None) -> dict[str, str]:
    """The worker's environment minus its private variables, plus `extra`. The base is copied
    from os.environ once per process: walking os.environ decodes every variable, a tenth of
    a millisecond per job."""
    global _base_env
    if _base_env is None:
        _base_env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env = dict(_base_env)
    env.update(extra or {})
    return env


# Python ignores these two at start-up, for its own sake; a job must not inherit that.
_PYTHONS_OWN_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)
_defaulted: frozenset[int] | None = None


def defaulted_signals() -> frozenset[int]:
    """The signals a job starts with at their default action: all of them, except those the
    worker's own parent chose to ignore (`nohup`'s SIGHUP), which pass on to the job as they
    would from a shell. Worked out once per process, on first use.

    Without this a job inherited Python's ignored SIGPIPE: in `yes | head -1`, `yes` got an
    error instead of the signal and complained, and `while :; do echo; done | head -1` never
    ended. (subprocess.Popen restores SIGPIPE; posix_spawn does not.) Naming every signal
    also spares glibc's posix_spawn from asking the kernel for each one's disposition before
    it resets it: 62 system calls in the new process instead of 122."""
    global _defaulted
    if _defaulted is None:
        _defaulted = frozenset(
            sig for sig in signal.valid_signals()
            if sig not in (signal.SIGKILL, signal.SIGSTOP)
            and (sig in _PYTHONS_OWN_IGNORES or signal.getsignal(sig) != signal.SIG_IGN))
    return _defaulted


def close_inherited_fds() -> None:
    """Make every descriptor above stderr close on exec. Jobs start with posix_spawn, which,
    unlike Popen(close_fds=True), passes on whatever is inheritable; Python's own descriptors
    never are, but a worker started as `queuectl worker start 3>file` has one. Called once
    when a worker starts."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass


def _in_folder(folder: str) -> bool:
    """Whether the worker's working directory is `folder` (asked each time, not remembered:
    a program using queuectl as a library may chdir between jobs)."""
    try:
        return os.getcwd() == folder
    except OSError:  # our own folder was deleted
        return False


def _spawn(command: str, cwd: str | None, env: dict[str, str], out_fd: int) -> int:
    """Start `sh -c command` as the leader of a new session, stdin from /dev/null, stdout and
    stderr into out_fd. posix_spawn (vfork and exec in C) costs the worker a third of what
    subprocess.Popen does per job. It has no working-directory option, so the worker, which
    is single-threaded, steps into the job's folder for the call and back out; not when the
    job's folder is the worker's own (the usual case: a job remembers the folder it was
    enqueued from), which saves three system calls per job."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_fd, 1),
        (os.POSIX_SPAWN_DUP2, out_fd, 2),  # one stream, interleaved in the order written
    ]
    back = None
    if cwd is not None and not _in_folder(cwd):
        back = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        os.chdir(cwd)
    try:
        # setsid: its own session and group, so killpg reaches every child it starts.
        return os.posix_spawn("/bin/sh", ["sh", "-c", command], env, file_actions=actions,
                              setsid=True, setsigdef=defaulted_signals())
    finally:
        if back is not None:
            os.fchdir(back)
            os.close(back)


class RunningJob:
    def __init__(self, command: str, *, cwd: str | None = None, env: dict | None = None,
                 output_limit: int = 1 << 20):
        if cwd is not None and not os.path.isdir(cwd):
            raise StartFailed(f"working directory {cwd} does not exist")
        read_fd, write_fd = os.pipe()
        try:
            self.pid = _spawn(command, cwd, job_environment(env), write_fd)
        except OSError as exc:
            os.close(read_fd)
            raise StartFailed(f"could not start the command: {exc}") from None
        finally:
            os.close(write_fd)
        self.pgid = self.pid
        self._stamp: str | None = None
        self.output = OutputCapture(output_limit)
        self._out_fd: int | None = read_fd
        os.set_blocking(read_fd, False)
        # A descriptor that turns readable when the command exits, opened by the first wait
        # that needs it (_exit_fd_for_wait): a short job has exited before anyone waits.
        self._exit_fd: int | None = None
        self._exit_fd_tried = False
        self.returncode: int | None = None

    def stamp(self) -> str | None:
        """The group leader's start stamp (see processes.py), read on first use. Not read at
        start: /proc/PID/stat blocks while the new process is still in exec, which made the
        read cost as much as a short job's whole run."""
        if self._stamp is None and self.returncode is None:
            self._stamp = start_stamp(self.pgid)
        return self._stamp

    def pump(self, timeout: float, wake_fds: tuple[int, ...] = ()) -> None:
        """Wait up to `timeout` for output, the command's exit, or a wake fd; take what came."""
        exit_fd = self._exit_fd_for_wait()
        fds = [fd for fd in (self._out_fd, exit_fd) if fd is not None]
        if self.returncode is not None:  # exited already: take what output there is
            timeout = 0.0
        elif exit_fd is None:
            timeout = min(timeout, 0.05)
        try:
            ready, _, _ = select.select(fds + list(wake_fds), [], [], max(0.0, timeout))
        except InterruptedError:
            ready = []
        if self._out_fd is not None and self._out_fd in ready:
            self._read_available()
        self.poll()

    def _exit_fd_for_wait(self) -> int | None:
        """The pidfd of the command, opened on first use, while the command is unreaped (so
        its pid cannot name another process yet); None once it exited, or where the kernel
        has no pidfd (the waits then poll in short steps)."""
        if not self._exit_fd_tried and self.poll() is None:
            self._exit_fd_tried = True
            try:
                self._exit_fd = os.pidfd_open(self.pid)
            except OSError:  # very old kernels
                self._exit_fd = None
        return self._exit_fd

    def poll(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while it runs."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: the status is lost
                self.returncode = 255  # a failure: the job is retried rather than trusted
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            exit_fd = self._exit_fd_for_wait()
            if exit_fd is not None:
                select.select([exit_fd], [], [], 1.0)
            else:
                time.sleep(0.01)
        assert self.returncode is not None
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
        if self._out_fd is not None:
            os.close(self._out_fd)
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
        returncode = self.wait()
        self.finish()
        return returncode
