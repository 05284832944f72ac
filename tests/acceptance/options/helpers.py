"""Helpers for the job-options acceptance tests (issue 3): the real CLI, real workers, /proc.

What a test learns about the queue comes from the CLI (mostly --json), from files the jobs
write, or from /proc. The one exception is `stored_output_bytes`, which reads the output table
to prove that the cut middle of a long output is really gone from the database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from ..helpers import wait_until  # also imported from here by the option tests

# Every process a test starts (CLI calls, workers, and through the workers every job) inherits
# this variable with a per-test value, so teardown can find and kill whatever is left.
TAG_VAR = "QUEUECTL_OPTIONS_TEST_TAG"

# Small timings: an idle worker looks for due jobs 5 times a second. heartbeat-seconds goes
# first because it must stay at most half of lease-seconds after every single `config set`.
FAST_CONFIG = (
    ("heartbeat-seconds", "0.5"),
    ("lease-seconds", "3"),
    ("poll-seconds", "0.2"),
)


def new_marker() -> str:
    return f"qctlmark{uuid.uuid4().hex[:12]}"


def marked_sleep(folder: Path, marker: str) -> str:
    """A path to `sleep` whose name holds `marker`, so every sleep a job starts with it shows
    the marker in its command line (and so does the `sh -c` that runs the job)."""
    link = folder / f"sleep-{marker}"
    if not link.exists():
        link.symlink_to("/usr/bin/sleep" if os.path.exists("/usr/bin/sleep") else "/bin/sleep")
    return str(link)


def _live(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def processes_with(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live, non-zombie process whose command line holds
    `marker` (a zombie is already dead; it only waits for its parent to reap it)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and _live(name):
            found.append((int(name), cmdline.strip()))
    return found


def processes_tagged(tag: str) -> list[int]:
    """Live processes started with TAG_VAR=tag in their environment."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in environ.split(b"\0") and _live(name):
            found.append(int(name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def assert_refused(result: subprocess.CompletedProcess, code: int = 2) -> None:
    """A refused command: the exit code, exactly one line on stderr, nothing on stdout."""
    described = f"exit {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr!r}"
    assert result.returncode == code, described
    assert "Traceback" not in result.stderr, described
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), described
    assert result.stdout == "", described


def iso_to_epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stored_output_bytes(db: str, job_id: str) -> int:
    """Bytes of output the database holds for a job, all runs together."""
    query = "SELECT COALESCE(SUM(length(data)), 0) FROM output_chunks WHERE job_id = "
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(db) as conn:
            return int(conn.execute(query + "%s", (job_id,)).fetchone()[0])
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(query + "?", (job_id,)).fetchone()[0])
    finally:
        conn.close()


class Worker:
    """One `queuectl worker start` (a supervisor and its worker processes) in a session of its
    own; its log goes to a file, so a chatty worker can never block on a full pipe."""

    def __init__(self, popen: subprocess.Popen, log_path: Path):
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker (pid {self.pid}) still running after {timeout:g}s; "
                                 f"its log:\n{self.log()}") from None

    def stop(self) -> None:
        """Cold stop (two SIGTERMs: running jobs are killed and put back), then SIGKILL of the
        whole session if it did not exit within 10 s."""
        if self.running():
            for _ in range(2):
                try:
                    self.popen.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()


class Queue:
    """The real CLI against one database, with its --json outputs parsed."""

    def __init__(self, cli, tmp_path: Path):
        self.cli = cli
        self.db: str = cli.db
        self.tmp = tmp_path
        self.workers: list[Worker] = []

    # -- calls --------------------------------------------------------------------------------

    def run(self, *args: str, input: str = "", cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Any call. Standard input is empty unless given (enqueue reads a non-terminal
        stdin when no job is passed), never the test runner's."""
        return subprocess.run(self.cli.command(*args), input=input, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd or self.cli.cwd)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.run(*args, **kw)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (
            f"queuectl {' '.join(args)}: exit {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str, **kw) -> Any:
        out = self.ok(*args, "--json", **kw).stdout
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"queuectl {' '.join(args)} --json printed non-JSON "
                                 f"({exc}):\n{out}") from None

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        return self.cli.popen(*args, **kw)

    def configure(self, *pairs: tuple[str, str]) -> None:
        for key, value in pairs:
            self.ok("config", "set", key, value)

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, command: str, *flags: str, cwd: Path | None = None, **spec: Any) -> str:
        """Enqueue one job: `spec` fields go in the JSON, `flags` on the command line."""
        out = self.ok("enqueue", *flags, json.dumps({"command": command, **spec}),
                      cwd=cwd).stdout.split()
        assert len(out) == 1, out
        return out[0]

    def show(self, job_id: str) -> dict:
        return self.json("show", job_id)

    def state(self, job_id: str) -> str:
        return self.show(job_id)["state"]

    def states(self) -> dict[str, str]:
        return {j["id"]: j["state"] for j in self.json("list", "--limit", "100000")}

    def wait_state(self, job_id: str, *states: str, timeout: float = 15) -> dict:
        """Poll `show` until the job is in one of `states`; returns the job."""
        last: dict = {}

        def reached() -> bool:
            last.update(self.show(job_id))
            return last["state"] in states

        wait_until(reached, timeout, f"job {job_id} to be {'/'.join(states)}")
        return last

    def logs(self, job_id: str, *args: str) -> subprocess.CompletedProcess:
        return self.ok("logs", job_id, *args)

    # -- workers ------------------------------------------------------------------------------

    def start_worker(self, *args: str) -> Worker:
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        with open(log_path, "w") as log:
            popen = self.popen("worker", "start", *args, stdout=log, stderr=log,
                               start_new_session=True)
        worker = Worker(popen, log_path)
        self.workers.append(worker)
        return worker

    def burst(self, *args: str, timeout: float = 30) -> Worker:
        """`worker start --burst`, waited for: it must exit 0 by itself."""
        worker = self.start_worker("--burst", *args)
        code = worker.wait(timeout)
        assert code == 0, f"burst worker exited {code}; its log:\n{worker.log()}"
        return worker

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.json("status")["workers"]]

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop()
