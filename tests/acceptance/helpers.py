"""Helpers for the acceptance tier: the real CLI, real worker processes, real signals.

Nothing here reaches into the package: everything a test learns about the queue comes from
the CLI's output (mostly its --json), from files the jobs write, or from /proc.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import conditions

T = TypeVar("T")

# Small timings so that recovery, retries and idle polls take a fraction of a second.
# heartbeat-seconds is set first: it must stay <= lease-seconds / 2 after every single step.
FAST_CONFIG = (
    ("heartbeat-seconds", "0.5"),
    ("lease-seconds", "2"),
    ("poll-seconds", "0.1"),
)


def wait_until(predicate: Callable[[], T], timeout: float, what: str = "condition",
               interval: float = 0.05) -> T:
    """tests/conditions.py's wait, polling less often: these predicates mostly run the CLI."""
    return conditions.wait_until(predicate, timeout, what, interval)


def new_marker() -> str:
    """A string unlikely to be in any other process's command line: a unique sleep length,
    so that it also names every `sleep` a job starts (sleep takes fractional seconds)."""
    return f"{300 + secrets.randbelow(600)}.{secrets.randbelow(10**6):06d}"


def processes_with(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line holds `marker`.
    Zombies have an empty command line, so they are not counted: they are gone already."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def children_of(pid: int) -> list[int]:
    """The pids of a process's children (the same /proc file as chaos/common.py reads)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T for stopped, Z...), None if gone
    (chaos/common.py has its own: the suite runs without the tests)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process: not gone, and not a zombie waiting for whoever adopted
    it (in a container that may be nobody)."""
    return process_state(pid) not in (None, "Z", "X")


def wait_until_gone(marker: str, timeout: float, what: str) -> None:
    """Wait until no live process has `marker` in its command line."""
    left: list[tuple[int, str]] = []

    def gone() -> bool:
        left[:] = processes_with(marker)
        return not left

    try:
        wait_until(gone, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still running: {left}") from None


def kill_processes_with(marker: str) -> None:
    for pid, _ in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def assert_one_error_line(result: subprocess.CompletedProcess, code: int) -> None:
    """The contract for a refused command: the exit code, exactly one line on stderr, no
    traceback, and nothing on stdout."""
    described = f"exit {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr!r}"
    assert result.returncode == code, described
    assert "Traceback" not in result.stderr, described
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), described
    assert result.stdout == "", described


class Workers:
    """One `queuectl worker start` process (a supervisor and its workers) in a session of its
    own, so that the whole tree can be signalled like a terminal would, or SIGKILLed."""

    def __init__(self, popen: subprocess.Popen, log_path: Path):
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        """A signal to the supervisor alone, as `kill PID` would send it."""
        self.popen.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """A signal to every process of the group, as a terminal's Ctrl-C would send it."""
        os.killpg(self.pid, signum)

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker start (pid {self.pid}) still running after "
                                 f"{timeout:g}s; its log:\n{self.log()}") from None

    def kill_supervisor(self) -> None:
        """SIGKILL the supervisor alone, as the OOM killer or `kill -9 PID` would."""
        self.popen.kill()
        self.popen.wait()

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers (the guardians and jobs live in sessions of
        their own and are not reached by this)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def cleanup(self) -> None:
        """Stop it if a test left it running: politely first, then by force."""
        if not self.running():
            return
        for signum in (signal.SIGTERM, signal.SIGTERM, signal.SIGCONT):  # CONT: if paused
            try:
                self.signal(signum)
            except ProcessLookupError:
                break
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class QueueCLI:
    """The real CLI against one database, with the parsing of its --json outputs."""

    def __init__(self, cli, tmp_path: Path):
        self.cli = cli
        self.db: str = cli.db
        self.tmp = tmp_path
        self.started: list[Workers] = []
        self.markers: list[str] = []

    # -- plain calls ----------------------------------------------------------------------

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Any call; standard input is empty unless given, never the test runner's."""
        return self.cli(*args, input="" if input is None else input)

    def ok(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        result = self.run(*args, input=input)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (
            f"queuectl {' '.join(args)}: exit {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        """`args --json`: exit 0, and stdout is one JSON document and nothing else."""
        out = self.ok(*args, "--json", input=input).stdout
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"queuectl {' '.join(args)} --json printed non-JSON "
                                 f"({exc}):\n{out}") from None

    # -- the queue as the CLI shows it ----------------------------------------------------

    def enqueue(self, *specs: dict) -> list[str]:
        """Enqueue jobs (one call for all of them); returns the ids printed on stdout."""
        text = json.dumps(specs[0] if len(specs) == 1 else list(specs))
        ids = self.ok("enqueue", text).stdout.split()
        assert len(ids) == len(specs), ids
        return ids

    def show(self, job_id: str) -> dict:
        return self.json("show", job_id)

    def state(self, job_id: str) -> str:
        return self.show(job_id)["state"]

    def counts(self) -> dict[str, int]:
        return self.json("status")["counts"]

    def jobs(self, state: str | None = None) -> list[dict]:
        args = ("list", "--limit", "100000") + (("--state", state) if state else ())
        return self.json(*args)

    def snapshot(self) -> tuple:
        """Everything a user can see of the stored queue, to compare before and after."""
        return (self.jobs(), self.json("dlq", "list"), self.json("config", "list"))

    def configure(self, *pairs: tuple[str, str]) -> None:
        for key, value in pairs:
            self.ok("config", "set", key, value)

    def fast(self, *extra: tuple[str, str]) -> None:
        self.configure(*FAST_CONFIG, *extra)

    def wait_for_state(self, job_id: str, state: str, timeout: float) -> dict:
        def reached():
            job = self.show(job_id)
            return job if job["state"] == state else None

        return wait_until(reached, timeout, f"job {job_id} to be {state}")

    # -- workers --------------------------------------------------------------------------

    def start_workers(self, count: int = 1, *extra: str, **popen_kw: Any) -> Workers:
        """`worker start` in a session of its own, logging to a file; `popen_kw` overrides
        how (a terminal as its standard streams, say)."""
        log_path = self.tmp / f"workers-{len(self.started) + 1}.log"
        with open(log_path, "w") as log:
            popen = self.cli.popen("worker", "start", "--count", str(count), *extra,
                                   **{"stdin": subprocess.DEVNULL, "stdout": log,
                                      "stderr": log, "start_new_session": True, **popen_kw})
        workers = Workers(popen, log_path)
        self.started.append(workers)
        return workers

    def marker(self) -> str:
        """A marker whose processes are killed when the test ends, whatever happened."""
        marker = new_marker()
        self.markers.append(marker)
        return marker

    def cleanup(self) -> None:
        for workers in self.started:
            workers.cleanup()
        # Job processes, and guardians or workers that outlived their supervisor.
        for marker in [*self.markers, self.db]:
            kill_processes_with(marker)


def database_is_untouched(db: str) -> bool:
    """True while nothing was created in the database: no SQLite file, or for PostgreSQL (whose
    database the fixture creates empty) no table in it."""
    if not db.startswith(("postgresql://", "postgres://")):
        return not os.path.exists(db)
    import psycopg

    with psycopg.connect(db, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    return row[0] == 0
