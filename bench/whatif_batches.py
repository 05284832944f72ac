"""What-if: what does more than one job per SQLite transaction buy figure 1?

    python bench/whatif_batches.py [--workers 2] [--jobs 2000] [--rounds 4]

Not a test: a measurement behind DECISIONS.md §29 and §30. Each round drains the same `true`
jobs with N worker processes in each of these ways, back to back:

- `one job per transaction`: `Worker.run` with its journal refused, so it records each job
  in the transaction that claims the next (what shipped before batches, and what a worker
  does on PostgreSQL).
- `batches (shipped)`: `Worker.run` as `worker start` runs it on SQLite: short jobs claimed
  and recorded up to BATCH_MOST per transaction, each result held in the journal meanwhile.
- `no database`: each process claims its share of jobs before the clock starts, from a
  queue file of its own, and records nothing: the worker's Python, spawn and wait alone.
- `xargs -PN`, the figure's baseline.

Times run from the first worker starting its loop to the last one finishing (interpreter
start-up and set-up excluded, so the ratios are a little higher than figure 1's, which
includes `worker start`'s own start-up). Prints jobs/s, the ratio to xargs, and the workers'
own CPU per job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import CLI_CODE, ROOT, median, remove_sqlite, write_jobs  # noqa: E402

WORKER = """
import os, sys, time
from queuectl.heap import keep_freed_memory
from queuectl.models import NewJob
from queuectl.runner import close_inherited_fds
from queuectl.store import open_store
from queuectl.watchdog import Watchdog
from queuectl.worker import Worker, new_identity

keep_freed_memory()
close_inherited_fds()
db, mode, share = sys.argv[1], sys.argv[2], int(sys.argv[3])
identity = new_identity()
# No database: a queue file of this process's own, used only before the clock starts.
store = open_store(f"{db}-own-{os.getpid()}" if mode == "none" else db, durable=False)
worker = Worker(store, identity, watchdog=Watchdog(), verbose=False)
if mode == "single":
    worker.use_journal = lambda: False  # no journal, no batches
claimed = []
if mode == "none":  # this process's share, claimed before the clock starts
    store.register_worker(identity, time.time())
    store.enqueue([NewJob(id=None, command="true", cwd=os.getcwd()) for _ in range(share)],
                  time.time())
    _, claimed = store.record_batch([], identity, time.time(), 60.0, claim=share)
    worker._record = lambda job, record, short=False: True
cpu, started = time.process_time(), time.time()
if mode == "none":
    for job in claimed:
        worker.execute(job)
    done = len(claimed)
else:
    worker.run(burst=True)
    done = worker.jobs_done
print(done, started, time.time(), time.process_time() - cpu)
"""

VARIANTS = [("one job per transaction", "single"), ("batches (shipped)", "batches"),
            ("no database", "none")]


def drain(src: str, db: str, jobs_file: str, jobs: int, workers: int,
          mode: str) -> tuple[float, float]:
    """(jobs/s, worker CPU µs per job) for one fresh queue."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    remove_sqlite(db)
    if mode != "none":
        subprocess.run([sys.executable, "-c", CLI_CODE, "--db", db, "enqueue", "--file",
                        jobs_file], env=env, check=True, stdout=subprocess.DEVNULL)
    shares = [jobs // workers + (i < jobs % workers) for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, db, mode, str(share)],
                              env=env, stdout=subprocess.PIPE, text=True) for share in shares]
    outputs = [p.communicate()[0].split() for p in procs]
    done = sum(int(out[0]) for out in outputs)
    if done != jobs:
        raise SystemExit(f"{mode}: the workers ran {done} of {jobs} jobs")
    elapsed = max(float(out[2]) for out in outputs) - min(float(out[1]) for out in outputs)
    return jobs / elapsed, sum(float(out[3]) for out in outputs) / jobs * 1e6


def xargs(lines_file: str, jobs: int, workers: int) -> float:
    with open(lines_file, "rb") as lines:
        started = time.perf_counter()
        subprocess.run(["xargs", f"-P{workers}", "-I{}", "sh", "-c", "true"], stdin=lines,
                       check=True)
        return jobs / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--src", default=os.path.join(ROOT, "src"))
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    rates["xargs"] = []
    cpu: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="queuectl-whatif-") as folder:
        os.chdir(folder)  # keep the checkout's queuectl.py off sys.path
        db = os.path.join(folder, "queue.db")
        jobs_file = write_jobs(os.path.join(folder, "jobs.jsonl"), args.jobs)
        lines_file = os.path.join(folder, "lines")
        with open(lines_file, "w") as f:
            f.write("x\n" * args.jobs)
        for number in range(1, args.rounds + 1):
            for name, mode in VARIANTS:
                rate, own = drain(args.src, db, jobs_file, args.jobs, args.workers, mode)
                rates[name].append(rate)
                cpu[name].append(own)
            rates["xargs"].append(xargs(lines_file, args.jobs, args.workers))
            print(f"round {number}/{args.rounds}: " + ", ".join(
                f"{name} {values[-1]:,.0f}" for name, values in rates.items()) + " jobs/s",
                file=sys.stderr)
    print(f"{args.workers} workers, {args.jobs} `true` jobs, medians of {args.rounds} "
          "interleaved rounds (ratio: of xargs in the same round):")
    for name in rates:
        ratio = median([r / x for r, x in zip(rates[name], rates["xargs"], strict=True)])
        own = f"; worker CPU {median(cpu[name]):.0f} µs/job" if name in cpu else ""
        print(f"  {name:24s} {median(rates[name]):7,.0f} jobs/s, ratio {ratio:.2f}{own}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
