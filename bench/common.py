"""What every figure needs: the child environment, timed runs, statistics, /proc readings.

The harness runs under any Python; the processes it times run `Bench.python` with this
checkout's src on PYTHONPATH and PYTHONDONTWRITEBYTECODE removed, so they load compiled
bytecode the way an installed queuectl (and every installed peer) does.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What a console script does; -c spares reading a script file, as a console script's is tiny.
# As the `queuectl` command runs (cli.run, which skips the interpreter's teardown); an older
# tree under --src has only main().
CLI_CODE = ("import sys, queuectl.cli as cli; "
            "cli.run() if hasattr(cli, 'run') else sys.exit(cli.main())")


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    metric: str
    value: str
    baseline: str = ""
    target: str = ""
    met: bool | None = None  # None: no target, or could not be measured
    note: str = ""


@dataclass
class Sizes:
    rounds: int
    throughput_jobs: int
    overhead_jobs: int
    cli_samples: int
    bulk_jobs: int
    bulk_rounds: int
    pickup_samples: int
    pickup_gaps: tuple[float, ...]
    idle_cpu_seconds: float
    scale_rows: int
    scale_rounds: int
    scale_cli_samples: int
    memory_jobs: int


FULL = Sizes(rounds=5, throughput_jobs=2000, overhead_jobs=10_000, cli_samples=40,
             bulk_jobs=100_000, bulk_rounds=5, pickup_samples=36,
             pickup_gaps=(0.1, 0.5, 1.0, 2.0, 3.0), idle_cpu_seconds=10.0,
             scale_rows=1_000_000, scale_rounds=5, scale_cli_samples=15, memory_jobs=100_000)
QUICK = Sizes(rounds=2, throughput_jobs=500, overhead_jobs=2000, cli_samples=12,
              bulk_jobs=100_000, bulk_rounds=1, pickup_samples=12,
              pickup_gaps=(0.05, 0.2, 0.5, 1.0), idle_cpu_seconds=4.0,
              scale_rows=200_000, scale_rounds=2, scale_cli_samples=8, memory_jobs=10_000)


@dataclass
class Bench:
    src: str
    python: str
    tmp: str
    sizes: Sizes
    pg_admin_url: str
    verbose: bool = True
    notes: list[str] = field(default_factory=list)
    # CPU seconds and minor page faults of the last timed() process and every descendant it
    # (or they) waited for: for a `worker start`, supervisor, workers, guardians, commands.
    last_usage: tuple[float, int] = (0.0, 0)

    # -- environment ------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("QUEUECTL_DB", None)
        env["PYTHONPATH"] = self.src
        env.update(extra)
        return env

    def warm(self) -> None:
        """Compile the checkout's modules once, so no timed process pays for compiling."""
        subprocess.run([self.python, "-m", "compileall", "-q", self.src], env=self.env(),
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([self.python, "-c", "import queuectl.cli, queuectl.api, "
                        "queuectl.worker, queuectl.supervisor, queuectl.store.sqlite"],
                       env=self.env(), check=True)

    def has_postgres_backend(self) -> bool:
        return os.path.exists(os.path.join(self.src, "queuectl", "store", "postgres.py"))

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def fresh_dir(self, name: str) -> str:
        folder = self.path(name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder

    def log(self, message: str) -> None:
        if self.verbose:
            sys.stderr.write(f"bench: {message}\n")
            sys.stderr.flush()

    # -- the CLI ----------------------------------------------------------------------------

    def cli_argv(self, db: str, *args: str) -> list[str]:
        return [self.python, "-c", CLI_CODE, "--db", db, *args]

    def cli(self, db: str, *args: str, stdin=None, check: bool = True) -> str:
        done = subprocess.run(self.cli_argv(db, *args), env=self.env(), stdin=stdin,
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"queuectl {' '.join(args)} exited {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return done.stdout

    def timed(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
              stdin_path: str | None = None, cwd: str | None = None) -> float:
        """Wall seconds from starting the process to reaping it; raises if it failed."""
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.Popen(argv, env=env or self.env(), stdin=stdin, cwd=cwd,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = proc.communicate()
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.last_usage = (
                after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                after.ru_minflt - before.ru_minflt)
        finally:
            if stdin_path:
                stdin.close()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])}... exited {proc.returncode}: "
                               f"{err.decode(errors='replace').strip()[-2000:]}")
        return elapsed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a figure starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- job files and databases ----------------------------------------------------------------


def write_jobs(path: str, count: int, command: str = "true", ids: str | None = None) -> str:
    """A JSON Lines file of `count` jobs; with `ids`, job i gets the id f"{ids}{i}"."""
    with open(path, "w") as f:
        if ids is None:
            f.write((json.dumps({"command": command}) + "\n") * count)
        else:
            f.writelines(json.dumps({"id": f"{ids}{i}", "command": command}) + "\n"
                         for i in range(count))
    return path


def sqlite_counts(db: str) -> dict[str, int]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    finally:
        conn.close()


def remove_sqlite(db: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(db + suffix)
        except FileNotFoundError:
            pass


# -- statistics -----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: with few samples, p99 is the largest but one or the largest."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


Variant = tuple[str, Callable[[], float]]


def interleaved(rounds: int, groups: Sequence[Sequence[Variant]],
                bench: Bench) -> dict[str, list[float]]:
    """Run every variant once per round. A group (a figure and its baseline) always runs
    back to back, so both see the same background load, and its order flips every round;
    the groups rotate, so that none always runs first (warm caches) or last. Returns every
    measurement, in round order: pair them by index for per-round ratios."""
    results: dict[str, list[float]] = {name: [] for group in groups for name, _ in group}
    for r in range(rounds):
        shift = r % len(groups)
        for group in list(groups[shift:]) + list(groups[:shift]):
            for name, run in (group if r % 2 == 0 else list(reversed(group))):
                value = run()
                results[name].append(value)
                bench.log(f"  round {r + 1}/{rounds} {name}: {value:.4g}")
    return results


def ratio_median(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: each pair ran back to back, under the same load."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


# -- /proc ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def parent_map() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields:
                parents[int(name)] = int(fields[1])
    return parents


def children(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    parents = parent_map() if parents is None else parents
    return sorted(p for p, pp in parents.items() if pp == pid)


def process_tree(root: int) -> list[int]:
    parents = parent_map()
    tree, frontier = [root], [root]
    while frontier:
        found = [p for p, pp in parents.items() if pp in frontier]
        tree += found
        frontier = found
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (not of their reaped children)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, grace: float = 10.0) -> None:
    """Ask a process (and, failing that, its whole group) to stop; always reaps it."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not the leader of its own group: kill it alone
                proc.kill()
            proc.wait()


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# -- formatting -----------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f} jobs/s"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


# -- PostgreSQL -----------------------------------------------------------------------------


# The server scratch databases are made on: run.py --pg, profile_worker.py --pg.
PG_ADMIN_URL = os.environ.get("QUEUECTL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database(admin_url: str, prefix: str = "queuectl_bench") -> str:
    """A new empty database on the server of `admin_url`; returns its URL."""
    import secrets

    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Postgres:
    """Scratch databases on a local server, for the figures with a PostgreSQL target."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.admin_url = bench.pg_admin_url
        self._unusable: str | None = None
        self._checked = False

    def unusable(self) -> str | None:
        """None when the backend can be measured, else why not (shown in the table)."""
        if self._checked:
            return self._unusable
        self._checked = True
        if not self.bench.has_postgres_backend():
            self._unusable = "n/a (backend not merged)"
            return self._unusable
        try:
            import psycopg
        except ImportError:
            self._unusable = "n/a (psycopg not installed for the harness)"
            return self._unusable
        try:
            psycopg.connect(self.admin_url, connect_timeout=3).close()
        except psycopg.OperationalError:
            self._unusable = f"n/a (no server at {self.admin_url})"
        return self._unusable

    def create(self) -> str:
        """A new empty database; returns its URL."""
        return create_database(self.admin_url)

    def drop(self, url: str) -> None:
        drop_database(self.admin_url, url)
