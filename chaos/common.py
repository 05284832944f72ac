"""The chaos harness: a scratch queue on either backend, the real CLI in subprocesses, the side
file every job appends to, the audit that turns it into figures, and the /proc scan.

Nothing here imports queuectl: the suite sees the product the way a user does (the CLI and its
--json), plus two things a user cannot fake: the side file (what actually ran) and the
`attempts` table read directly (one query instead of one `show --json` per job).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("QUEUECTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# The acceptance tests' fast timings (tests/acceptance/helpers.py). heartbeat-seconds first: it
# must stay <= lease-seconds / 2 after every single step.
FAST_CONFIG = (("heartbeat-seconds", "0.5"), ("lease-seconds", "2"), ("poll-seconds", "0.1"))
TERMINAL = {"completed", "dead", "cancelled"}


class ScenarioFailed(AssertionError):
    """A scenario could not even reach the point where its figures mean something."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ScenarioFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# -- the figures of one scenario on one backend ---------------------------------------------


@dataclass
class Row:
    scenario: str
    backend: str
    jobs: int = 0
    faults: int = 0
    lost: int = 0
    double_terminal: int = 0
    extra: int = 0
    extra_bound: int = 0
    recovery: float | None = None  # worst, seconds
    recovery_bound: float | None = None
    leftovers: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Turn the figures into problems; a scenario adds its own specific ones."""
        if self.lost:
            self.problems.append(f"{self.lost} job(s) lost")
        if self.double_terminal:
            self.problems.append(f"{self.double_terminal} job(s) with two terminal states")
        if self.extra > self.extra_bound:
            self.problems.append(f"{self.extra} extra executions > bound {self.extra_bound}")
        if self.leftovers:
            self.problems.append(f"{self.leftovers} leftover process(es)")
        if (self.recovery is not None and self.recovery_bound is not None
                and self.recovery > self.recovery_bound):
            self.problems.append(f"recovery {self.recovery:.2f}s > bound "
                                 f"{self.recovery_bound:g}s")

    @property
    def passed(self) -> bool:
        return not self.problems


# -- the run's processes: an environment marker inherited by everything ---------------------


def marked_processes(marker: str, cmdline_has: str | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries CHAOS_RUN=marker.

    Every queuectl process the suite starts gets the variable, and everything they start
    inherits it (workers pass their environment to jobs, jobs to their children), so this
    finds guardians, orphaned jobs and a job's `sleep` too, which a command-line marker would
    miss. Zombies have an empty command line and are already gone."""
    needle = f"CHAOS_RUN={marker}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline and (cmdline_has is None or cmdline_has in cmdline):
            found.append((int(entry.name), cmdline))
    return found


def processes_with_env(marker: str, **env: str) -> list[int]:
    """This run's processes whose environment also holds every NAME=VALUE given, e.g. the
    processes of one run of one job (QUEUECTL_JOB_ID, QUEUECTL_RUN: the worker sets both)."""
    return [pid for pid, _ in marked_processes(marker)
            if all(environ_of(pid).get(k) == v for k, v in env.items())]


def sigkill_all(pids: list[int]) -> int:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cmdline_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (T: stopped), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_job_shell(pid: int) -> bool:
    """Whether `pid` is a job's `sh -c COMMAND` (workers start it as argv `sh -c ...`)."""
    argv = cmdline_of(pid).split(" ", 2)
    return len(argv) >= 2 and os.path.basename(argv[0]) == "sh" and argv[1] == "-c"


def environ_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            pairs = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").partition("=")[::2] for p in pairs if b"=" in p)


# -- the side file: what actually ran ---------------------------------------------------------


@dataclass
class Execution:
    job: str
    run: int
    pid: int
    started: float
    ended: bool = False


class SideFile:
    """Each job appends `ID RUN PID start TIME` before its body and `ID RUN PID end` after.
    `>>` opens with O_APPEND and each line is far below PIPE_BUF, so concurrent jobs never
    interleave within a line. A SIGKILLed run has a start line and no end line."""

    def __init__(self, path: Path):
        self.path = path

    def command(self, body: str) -> str:
        tag = '"$QUEUECTL_JOB_ID" "$QUEUECTL_RUN" "$$"'
        return (f"printf '%s %s %s start %s\\n' {tag} \"$(date +%s.%N)\" >> {self.path}; "
                f"{body}; printf '%s %s %s end\\n' {tag} >> {self.path}")

    def executions(self) -> list[Execution]:
        if not self.path.exists():
            return []
        runs: dict[tuple[str, int, int], Execution] = {}
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue  # a line cut by a SIGKILL between write calls: cannot happen, but
            job, run, pid, kind = parts[0], int(parts[1]), int(parts[2]), parts[3]
            key = (job, run, pid)
            if kind == "start":
                runs[key] = Execution(job, run, pid, float(parts[4]))
            elif key in runs:
                runs[key].ended = True
        return list(runs.values())


# -- a queue on one backend -------------------------------------------------------------------


class Workers:
    """One `queuectl worker start` (a supervisor and its workers) in a session of its own."""

    def __init__(self, popen: subprocess.Popen, log_path: Path):
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The supervisor's forked workers (each worker's guardian is the worker's child)."""
        return children_of(self.pid)

    def wait_ready(self, count: int, timeout: float = 60) -> None:
        """Until `count` workers said they started: a SIGTERM that reaches `worker start`
        before it installed its handlers kills it outright (any program's default), which
        says nothing about the queue."""
        wait_until(lambda: self.log().count("] started (pid ") >= count, timeout,
                   f"{count} worker(s) of supervisor {self.pid} to start")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.pid, signum)

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScenarioFailed(f"worker start {self.pid} still running after {timeout:g}s; "
                                 f"log tail:\n{self.log()[-2000:]}") from None

    def stop(self, timeout: float = 60) -> int:
        """A warm stop; the caller decides whether the exit code matters."""
        if self.running():
            self.signal(signal.SIGTERM)
        return self.wait(timeout)


class Queue:
    """The real CLI against one scratch database, on SQLite or PostgreSQL."""

    def __init__(self, scratch: Path, backend: str, marker: str, pg_admin: str = PG_ADMIN_URL):
        self.dir = scratch
        self.backend = backend
        self.marker = marker
        self.pg_admin = pg_admin
        self.env = {**os.environ, "CHAOS_RUN": marker,
                    "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.env.pop("QUEUECTL_DB", None)
        self.started: list[Workers] = []
        if backend == "sqlite":
            self.db = str(scratch / "queue.db")
        else:
            self.pg_name = f"chaos_{marker}"
            with self._admin() as admin:
                admin.execute(f'CREATE DATABASE "{self.pg_name}"')
            self.db = f"{pg_admin.rpartition('/')[0]}/{self.pg_name}"

    def _admin(self):
        import psycopg

        return psycopg.connect(self.pg_admin, autocommit=True, connect_timeout=10)

    def command(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "queuectl", "--db", self.db, *args]

    def run(self, *args: str, input: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir, env=self.env)

    def ok(self, *args: str, input: str = "", timeout: float = 120) -> str:
        result = self.run(*args, input=input, timeout=timeout)
        if result.returncode != 0 or "Traceback" in result.stderr:
            raise ScenarioFailed(f"queuectl {' '.join(args)[:200]}: exit {result.returncode}: "
                                 f"{result.stderr[-1500:]}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def configure(self, *pairs: tuple[str, str]) -> None:
        self.ok("config", "set", *[item for pair in pairs for item in pair])

    def fast(self, *extra: tuple[str, str]) -> None:
        # One call per key, in order: each step must pass the heartbeat <= lease/2 check.
        for pair in (*FAST_CONFIG, *extra):
            self.configure(pair)

    def enqueue(self, specs: list[dict]) -> list[str]:
        ids = self.ok("enqueue", "-", input=json.dumps(specs)).split()
        if len(ids) != len(specs):
            raise ScenarioFailed(f"enqueue printed {len(ids)} ids for {len(specs)} jobs")
        return ids

    def jobs(self) -> dict[str, dict]:
        return {job["id"]: job for job in self.json("list", "--limit", "10000000")}

    def counts(self) -> dict[str, int]:
        return self.json("status")["counts"]

    def start_workers(self, count: int, *extra: str, prefix: list[str] | None = None,
                      job_control: bool = False) -> Workers:
        """`worker start --count N` in its own session; `prefix` wraps the command (unshare).
        `job_control`: in a process group of its own within our session instead, as a shell
        with job control starts it, so that a terminal stop (SIGTSTP) to the group is not
        discarded by the kernel as it is in an orphaned group."""
        log_path = self.dir / f"workers-{len(self.started) + 1}.log"
        how: dict[str, Any] = {"process_group": 0} if job_control else {
            "start_new_session": True}
        with open(log_path, "w") as log:
            popen = subprocess.Popen([*(prefix or []), *self.command(
                "worker", "start", "--count", str(count), *extra)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir, env=self.env,
                **how)
        workers = Workers(popen, log_path)
        self.started.append(workers)
        return workers

    # -- reading the database directly, for audits only -------------------------------------

    def query(self, sql: str) -> list[tuple]:
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.db, timeout=60)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.db, connect_timeout=10) as conn:
            return conn.execute(sql).fetchall()

    def history_rows(self) -> list[tuple[str, int, str, float]]:
        """(job id, run, outcome, finished at) of every finished run, in run order."""
        return self.query("SELECT job_id, run, outcome, finished_at FROM attempts "
                          "ORDER BY job_id, run")

    def history(self) -> dict[str, list[str]]:
        """Outcomes of every finished run, per job, in run order."""
        outcomes: dict[str, list[str]] = defaultdict(list)
        for job_id, _run, outcome, _at in self.history_rows():
            outcomes[job_id].append(outcome)
        return outcomes

    def recovered_at(self) -> dict[tuple[str, int], float]:
        """When each run lost with its worker was taken back (its `crashed` record)."""
        return {(job_id, run): at for job_id, run, outcome, at in self.history_rows()
                if outcome == "crashed"}

    def integrity(self) -> str:
        """'ok', or what is wrong. SQLite: PRAGMA integrity_check. PostgreSQL has no cheap
        equivalent; there the check is that the queue opens and counts its jobs."""
        if self.backend == "sqlite":
            rows = self.query("PRAGMA integrity_check")
            return "; ".join(str(r[0]) for r in rows)
        self.counts()
        return "ok"

    def cleanup(self) -> None:
        for workers in self.started:
            if workers.running():
                try:
                    workers.signal_group(signal.SIGKILL)
                except ProcessLookupError:
                    pass
                workers.popen.wait()
        sigkill_all([pid for pid, _ in marked_processes(self.marker)])
        if self.backend != "sqlite":
            try:
                with self._admin() as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real result
                print(f"chaos: could not drop {self.pg_name}: {exc}", file=sys.stderr)


class Scratch:
    """A temporary directory, a unique marker and a Queue; everything removed at the end,
    including every process that carries the marker."""

    def __init__(self, backend: str, pg_admin: str = PG_ADMIN_URL):
        self.marker = secrets.token_hex(6)
        self.dir = Path(tempfile.mkdtemp(prefix=f"queuectl-chaos-{self.marker}-"))
        self.side = SideFile(self.dir / "side.txt")
        self.queue: Queue | None = None
        self.backend = backend
        self.pg_admin = pg_admin

    def __enter__(self) -> Scratch:
        self.queue = Queue(self.dir, self.backend, self.marker, self.pg_admin)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.queue is not None:
            self.queue.cleanup()
        if not os.environ.get("CHAOS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self, timeout: float = 10.0) -> list[tuple[int, str]]:
        """Processes of this run still alive once everything should have ended: waits up to
        `timeout` for stragglers (a job's kill grace, a guardian's poll) before counting."""
        deadline = time.monotonic() + timeout
        while True:
            left = marked_processes(self.marker)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)


# -- the audit: figures from the side file and the history -------------------------------------


@dataclass
class Audit:
    lost: list[str]
    double_terminal: list[str]
    extra: int
    not_terminal: list[str]
    executions: list[Execution]
    described: dict[str, str] = field(default_factory=dict)  # what is known of each lost job


def audit(queue: Queue, side: SideFile, expected: dict[str, str]) -> Audit:
    """`expected` maps every acknowledged job id to the state it must end in.

    lost: missing from the queue, not in its expected state, or completed without a finished
    execution in the side file (the database's word is not enough). Two terminal states: a
    job whose history holds more than one completion or cancellation, or any run after one.
    Extra executions: runs started beyond one per job, counted from the side file."""
    jobs = queue.jobs()
    history = queue.history()
    executions = side.executions()
    ran: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        ran[execution.job].append(execution)
    lost = []
    for job_id, state in expected.items():
        job = jobs.get(job_id)
        if job is None or job["state"] != state:
            lost.append(job_id)
        elif state == "completed" and not any(e.ended for e in ran[job_id]):
            lost.append(job_id)
    double = []
    for job_id, outcomes in history.items():
        final = [i for i, o in enumerate(outcomes) if o in ("completed", "cancelled")]
        if len(final) > 1 or (final and final[0] != len(outcomes) - 1):
            double.append(job_id)
    extra = sum(max(0, len(runs) - 1) for runs in ran.values())
    not_terminal = [j for j, job in jobs.items() if job["state"] not in TERMINAL]
    described = {}
    for job_id in lost + double:
        job = jobs.get(job_id) or {}
        runs = [(e.run, "ended" if e.ended else "cut") for e in ran[job_id]]
        described[job_id] = (f"state {job.get('state')}, runs {job.get('runs')}, crashes "
                             f"{job.get('crashes')}, history {history.get(job_id)}, side file "
                             f"{sorted(runs)}, last error {job.get('last_error')!r}")
    return Audit(lost, double, extra, not_terminal, executions, described)


def apply_audit(row: Row, result: Audit) -> None:
    row.lost = len(result.lost)
    row.double_terminal = len(result.double_terminal)
    row.extra = result.extra
    if result.not_terminal:
        row.problems.append(f"{len(result.not_terminal)} job(s) not terminal")
    for what, ids in (("lost", result.lost), ("two terminal states", result.double_terminal)):
        for job_id in ids[:5]:
            row.notes.append(f"{what}: {job_id}: {result.described.get(job_id)}")
