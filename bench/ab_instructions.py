"""Code against code in instructions per job, which a busy machine does not move.

    python bench/ab_instructions.py OLD_SRC NEW_SRC [--path worker|bulk] [--jobs 1000]

On this kind of shared machine a timed figure drifts by 10 to 20% from one minute to the next
(figure 2 read 12,600 and 17,600 jobs/s for the same code minutes apart), more than most
changes move it. Valgrind's callgrind counts the instructions a process runs, the same on
every run whatever else the machine does, so a few per cent shows. It does not see the
kernel (fsync, page writes, the WAL), nor contention between processes: check a change that
adds pages or locking with the timed figures too (DECISIONS.md §34 is an example of both).

Each tree runs one process twice, with `--jobs` and three times as many jobs; the difference
divided by the extra jobs is the cost per job, start-up and schema creation cancelled out.
Paths:
- worker: enqueue, then claim and complete every job in batches of 16 as a SQLite worker
  does (JobStore.record_batch), no command run: figure 2's loop in one process.
- bulk: one `enqueue` of that many jobs through the store (figure 4 without the JSON file).

Needs `valgrind` (apt-get install valgrind). Make OLD_SRC with
`git archive HEAD~1 src | tar -x -C /tmp/old` and pass /tmp/old/src. Not pass/fail; CI does
not run it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import remove_sqlite  # noqa: E402

LOOP = """
import sys, time
from queuectl.models import NewJob
from queuectl.store import open_store
from queuectl.worker import new_identity
db, jobs, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = open_store(db, durable=False)
now = time.time()
store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(jobs)], now)
if path == "worker":
    me = new_identity()
    store.register_worker(me, now)
    _, batch = store.record_batch([], me, now, 60, claim=16)
    while batch:
        records = [lambda job=job: store.complete(job, now + 1) for job in batch]
        _, batch = store.record_batch(records, me, now + 1, 60, claim=16)
    assert store.counts()["completed"] == jobs, store.counts()
store.close()
"""


def instructions(src: str, python: str, folder: str, jobs: int, path: str) -> int:
    db = os.path.join(folder, "q.db")
    remove_sqlite(db)
    shutil.rmtree(db + "-journals", ignore_errors=True)
    out = os.path.join(folder, "callgrind.out")
    env = dict(os.environ, PYTHONPATH=src)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           python, "-c", LOOP, db, str(jobs), path],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the loop failed on {src}:\n{done.stderr[-2000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--path", choices=["worker", "bulk"], default="worker")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="queuectl-instructions-")
    try:
        per_job = {}
        for name, src in (("old", args.old_src), ("new", args.new_src)):
            subprocess.run([args.python, "-m", "compileall", "-q", src], check=True,
                           stdout=subprocess.DEVNULL)  # no timed run compiles
            few = instructions(src, args.python, folder, args.jobs, args.path)
            many = instructions(src, args.python, folder, 3 * args.jobs, args.path)
            per_job[name] = (many - few) / (2 * args.jobs)
            print(f"{name}: {per_job[name]:,.0f} instructions per job ({src})")
        change = per_job["new"] / per_job["old"] - 1
        print(f"new/old: {per_job['new'] / per_job['old']:.3f} ({change:+.1%})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
