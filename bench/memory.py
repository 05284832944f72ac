"""Figure 7: resident memory of each worker process across a long run.

`worker start --count 2` runs 100,000 `true` jobs; VmRSS of each worker process (the
supervisor's children) is read when 1%, 50% and 95% of the jobs are done. The baseline, read in
the same run: a bare interpreter that imported sqlite3.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

from common import Bench, Row, children, rss_mib, stop_process, wait_until, write_jobs

TARGET_MIB = 40.0
FLAT_MIB = 2.0  # what "flat" means here: end minus start, for every worker
MARKS = (("start", 0.01), ("middle", 0.50), ("end", 0.95))
# The queue is fed in batches rather than holding all jobs at once: the shipped claim costs
# time in proportion to the backlog (see figure 2), and this figure is about memory.
BATCH = 2000


def _peak_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(bench: Bench) -> list[Row]:
    jobs = bench.sizes.memory_jobs
    folder = bench.fresh_dir("memory")
    db = f"{folder}/queue.db"
    batch_file = write_jobs(f"{folder}/batch.jsonl", BATCH)
    bench.cli(db, "config", "set", "max-retries", "3")  # create the queue
    baseline = subprocess.Popen([bench.python, "-c", "import sqlite3, time; time.sleep(600)"],
                                env=bench.env())
    bench.log(f"figure 7: {jobs:,} jobs through 2 workers, fed {BATCH:,} at a time")
    proc = subprocess.Popen(bench.cli_argv(db, "worker", "start", "--count", "2", "--quiet"),
                            env=bench.env(), stderr=subprocess.DEVNULL, start_new_session=True)
    readings: dict[str, dict[int, float]] = {}
    peaks: dict[int, float] = {}
    reader = sqlite3.connect(db, timeout=60)
    started = time.monotonic()
    try:
        if not wait_until(lambda: len(children(proc.pid)) >= 2, 30):
            raise RuntimeError("the supervisor did not start 2 workers")
        workers = children(proc.pid)[:2]
        fed, marks = 0, list(MARKS)
        deadline = time.monotonic() + jobs * 0.05 + 120
        while marks and time.monotonic() < deadline:
            counts = dict(reader.execute("SELECT state, COUNT(*) FROM jobs WHERE state IN "
                                         "('pending', 'completed') GROUP BY state").fetchall())
            done = counts.get("completed", 0)
            if fed < jobs and counts.get("pending", 0) < BATCH // 2:
                bench.cli(db, "enqueue", "--file", batch_file)
                fed += BATCH
            if done >= marks[0][1] * jobs:
                mark = marks.pop(0)[0]
                readings[mark] = {pid: rss_mib(pid) or 0.0 for pid in workers}
                peaks = {pid: _peak_mib(pid) or 0.0 for pid in workers}
                bench.log(f"  {mark} ({done:,} done): "
                          + ", ".join(f"{v:.1f} MiB" for v in readings[mark].values()))
            if proc.poll() is not None:
                raise RuntimeError("the workers exited before the last reading")
            time.sleep(0.05)
        if marks:
            raise RuntimeError(f"only {done:,} of {jobs:,} jobs were done before the deadline")
        base = rss_mib(baseline.pid) or 0.0
        rate = done / (time.monotonic() - started)
    finally:
        reader.close()
        stop_process(proc, grace=60)
        baseline.kill()
        baseline.wait()

    per_worker = "; ".join(
        f"worker {i + 1}: " + " / ".join(f"{readings[m][pid]:.1f}" for m, _ in MARKS)
        + f" MiB (peak {peaks[pid]:.1f})"
        for i, pid in enumerate(readings["start"])
    )
    highest = max(max(r.values()) for r in readings.values())
    growth = max(readings["end"][pid] - readings["start"][pid] for pid in readings["start"])
    return [
        Row("7 memory", f"VmRSS of each worker at 1% / 50% / 95% of {jobs:,} jobs (fed "
            f"{BATCH:,} at a time; {rate:,.0f} jobs/s overall)", per_worker,
            f"`python -c \"import sqlite3\"`: {base:.1f} MiB", f"< {TARGET_MIB:g} MiB",
            highest < TARGET_MIB),
        Row("7 memory", "growth of a worker's VmRSS from 1% to 95% of the jobs",
            f"{growth:+.2f} MiB", "", f"flat: <= {FLAT_MIB:g} MiB", growth <= FLAT_MIB),
    ]
