"""Where a worker's time goes per job: N workers under cProfile drain `true` jobs.

    python bench/profile_worker.py [--jobs 2000] [--workers 2] [--src DIR] [--pg [URL]]

Prints, per job and per worker, the cumulative time of each step of the job path (spawn, the
guardian pipe, waiting for the command, recording the result with the next claim), with the
number of calls per job. Numbers are inflated by cProfile itself (about 1 µs per call): compare
steps with each other, not with the benchmark's wall times. With --pg the queue is a scratch
database on that PostgreSQL server (dropped after), and the steps are those of the journal
table and of psycopg instead of SQLite's.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    PG_ADMIN_URL,
    ROOT,
    create_database,
    drop_database,
    remove_sqlite,
    write_jobs,
)

STEPS = [  # (label, file suffix, function name); cumulative time of each
    ("whole job: run_once", "worker.py", "run_once"),
    ("  claim, when not chained (its own transaction)", "jobstore.py", "claim"),
    ("  execute: spawn to recorded", "worker.py", "execute"),
    ("    RunningJob(): pipe + posix_spawn", "runner.py", "__init__"),
    ("      posix_spawn (vfork + exec)", "~", "<built-in method posix.posix_spawn>"),
    ("    guardian pipe writes (job_started/ended)", "watchdog.py", "_send"),
    ("    set_process (jobs past 0.25 s only)", "jobstore.py", "set_process"),
    ("    _supervise: wait for the command", "worker.py", "_supervise"),
    ("      select() while the command runs", "~", "<built-in method select.select>"),
    ("    runner.finish: leftovers, drain, close", "runner.py", "finish"),
    ("    record_batch: results + next claim, one transaction", "jobstore.py",
     "record_batch"),
    ("      the result's statements (complete)", "jobstore.py", "complete"),
    ("  data_version polls (changed)", "sqlite.py", "changed"),
    ("every sqlite3 execute()", "~", "<method 'execute' of 'sqlite3.Connection' objects>"),
    ("  of which COMMIT (a transaction's exit)", "sqlite.py", "__exit__"),
]
PG_STEPS = STEPS[:STEPS.index(("  data_version polls (changed)", "sqlite.py", "changed"))] + [
    ("    journal line before the spawn (with the last result)", "journal_table.py",
     "started"),
    ("    every statement sent and answered", "postgres.py", "_run_all"),
    ("      of which psycopg waits for the answer", "connection.py", "wait"),
    ("    NOTIFY/LISTEN checks (changed)", "postgres.py", "changed"),
]

CHILD = """
import cProfile, sys
from queuectl.store import open_store
from queuectl.watchdog import Watchdog
from queuectl.worker import Worker, new_identity
try:  # as worker start's children do, where the tree has it
    from queuectl.heap import keep_freed_memory
    keep_freed_memory()
except ImportError:
    pass
watchdog = Watchdog()
store = open_store(sys.argv[1], durable=False)
worker = Worker(store, new_identity(), watchdog=watchdog, verbose=False)
cProfile.run("worker.run(burst=True)", sys.argv[2])
print(worker.jobs_done)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--src", default=os.path.join(ROOT, "src"))
    parser.add_argument("--pg", nargs="?", const=PG_ADMIN_URL, default=None, metavar="URL",
                        help="profile on a scratch database of this server "
                        f"(default {PG_ADMIN_URL})")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.src))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="queuectl-profile-") as tmp:
        os.chdir(tmp)  # keep the checkout's queuectl.py off sys.path
        if args.pg:
            db = create_database(args.pg, prefix="queuectl_profile")
        else:
            db = os.path.join(tmp, "queue.db")
        try:
            jobs, stats = profile(db, args, env, tmp)
        finally:
            if args.pg:
                drop_database(args.pg, db)
    report(stats, jobs, PG_STEPS if args.pg else STEPS)
    return 0


def profile(db: str, args: argparse.Namespace, env: dict[str, str],
            tmp: str) -> tuple[int, pstats.Stats]:
    """Fill the queue, drain it with profiled workers; (jobs done, their merged profiles)."""
    if not args.pg:
        remove_sqlite(db)
    subprocess.run([sys.executable, "-c", "import sys; from queuectl.cli import main; "
                    "sys.exit(main())", "--db", db, "enqueue", "--file",
                    write_jobs(os.path.join(tmp, "jobs.jsonl"), args.jobs)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    profiles = [os.path.join(tmp, f"w{i}.prof") for i in range(args.workers)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, db, p], env=env,
                              stdout=subprocess.PIPE, text=True) for p in profiles]
    done = [int(p.communicate()[0]) for p in procs]
    print(f"{sum(done)} jobs over {args.workers} workers ({done}); per job, per worker:\n")
    return sum(done), pstats.Stats(*profiles)


def report(stats: pstats.Stats, jobs: int, steps: list[tuple[str, str, str]]) -> None:
    by_name: dict[tuple[str, str], tuple[int, float]] = {}
    for (filename, _, name), (_, ncalls, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = (os.path.basename(filename), name)
        calls, total = by_name.get(key, (0, 0.0))
        by_name[key] = (calls + ncalls, total + cumtime)
    print(f"{'step':60s} {'µs/job':>8s} {'calls/job':>10s}")
    for label, suffix, name in steps:
        calls, total = by_name.get((suffix, name), (0, 0.0))
        print(f"{label:60s} {total / jobs * 1e6:8.0f} {calls / jobs:10.2f}")
    print("\nlargest own times:")
    stats.sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    sys.exit(main())
