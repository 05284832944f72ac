"""Code against code: N workers drain `true` jobs, each source tree in turn, round after round.

    python bench/ab_workers.py OLD_SRC NEW_SRC [--workers 2] [--jobs 2000] [--rounds 6]

On a shared machine a figure drifts by 10 to 20% from one minute to the next, more than most
changes move it, so a change is measured against the code before it in the same rounds, never
against a figure from another run. Make OLD_SRC with `git worktree add /tmp/old HEAD~1` and
pass /tmp/old/src. Per tree it prints the median jobs/s, the workers' own CPU per job and their
children's (the commands; the guardian is idle), from getrusage in each worker process.

Each worker is a `Worker` in a fresh interpreter, as `worker start` runs it but without the
supervisor, so start-up stays out of the figures. Not pass/fail; CI does not run it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import CLI_CODE, median, remove_sqlite, write_jobs  # noqa: E402

WORKER = """
import resource, sys
from queuectl.runner import close_inherited_fds
from queuectl.store import open_store
from queuectl.watchdog import Watchdog
from queuectl.worker import Worker, new_identity
try:  # as worker start's children do, where the tree has it
    from queuectl.heap import keep_freed_memory
    keep_freed_memory()
except ImportError:
    pass
close_inherited_fds()
watchdog = Watchdog()
store = open_store(sys.argv[1], durable=False)
worker = Worker(store, new_identity(), watchdog=watchdog, verbose=False)
worker.run(burst=True)
own = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(worker.jobs_done, own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime)
"""


def drain(src: str, db: str, jobs_file: str, jobs: int, workers: int) -> tuple[float, ...]:
    """(jobs/s, worker CPU µs per job, children's CPU µs per job) for one fresh queue."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    remove_sqlite(db)
    subprocess.run([sys.executable, "-c", CLI_CODE, "--db", db, "enqueue", "--file", jobs_file],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, db], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    outputs = [p.communicate()[0].split() for p in procs]
    elapsed = time.perf_counter() - started
    done = sum(int(out[0]) for out in outputs)
    if done != jobs:
        raise SystemExit(f"{src}: the workers ran {done} of {jobs} jobs")
    own = sum(float(out[1]) for out in outputs)
    kids = sum(float(out[2]) for out in outputs)
    return jobs / elapsed, own / jobs * 1e6, kids / jobs * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="SRC", help="src folders to compare")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, ...]]] = {src: [] for src in args.sources}
    with tempfile.TemporaryDirectory(prefix="queuectl-ab-") as folder:
        os.chdir(folder)  # keep a checkout's queuectl.py off sys.path
        db = os.path.join(folder, "queue.db")
        jobs_file = write_jobs(os.path.join(folder, "jobs.jsonl"), args.jobs)
        for number in range(1, args.rounds + 1):
            for src in args.sources:
                results[src].append(drain(src, db, jobs_file, args.jobs, args.workers))
            print(f"round {number}/{args.rounds}: " + "  ".join(
                f"{results[src][-1][0]:,.0f}" for src in args.sources) + " jobs/s",
                file=sys.stderr)
    print(f"{args.workers} workers, {args.jobs} `true` jobs, medians of {args.rounds} "
          "interleaved rounds:")
    for src, rows in results.items():
        rate = median([r[0] for r in rows])
        own = median([r[1] for r in rows])
        kids = median([r[2] for r in rows])
        spread = f"{min(r[0] for r in rows):,.0f} to {max(r[0] for r in rows):,.0f}"
        print(f"  {src}: {rate:,.0f} jobs/s ({spread}); worker CPU {own:.0f} µs/job, "
              f"commands {kids:.0f} µs/job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
