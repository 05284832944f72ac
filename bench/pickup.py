"""Figure 5: how soon an idle worker starts a new job, and what idling costs.

Latency: `worker start --count 2` runs idle; after a gap (various lengths, some longer than
poll-seconds) one `enqueue` call adds a job whose command writes `date +%s.%N` to a file. The
figure is that timestamp minus the moment the enqueue process had exited. The baseline is the
same command spawned directly by the harness (start of spawn to timestamp): the floor that no
queue can beat.

Idle CPU: utime + stime of the whole tree (supervisor, workers, their guardians) over a window,
as % of one core. The baseline, measured in the same window: two bare Python processes polling
`PRAGMA data_version` every 20 ms, what idle workers did before they blocked on inotify of the
WAL file (DECISIONS.md 23).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time

from common import (
    Bench,
    Postgres,
    Row,
    cpu_seconds,
    fmt_ms,
    median,
    percentile,
    process_tree,
    stop_process,
    wait_until,
)

TARGET_P50, TARGET_P99, TARGET_PG_P50 = 0.020, 0.100, 0.010
TARGET_IDLE_CPU = 2.0
# A long-lived process enqueueing through the Python API on a kept connection: it prints the
# time right after enqueue() returned, i.e. after the commit, without a process exit after it.
API_ENQUEUER = """
import sys, time
from queuectl import Queue
queue = Queue(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    queue.enqueue(command=line.rstrip("\\n"))
    print(repr(time.time()), flush=True)
"""
POLLER = """
import select, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
while True:
    select.select([], [], [], 0.02)
    conn.execute("PRAGMA data_version").fetchone()
"""


def _read_stamp(path: str, timeout: float = 10.0) -> float:
    def ready() -> bool:
        try:
            with open(path) as f:
                return f.read().endswith("\n")
        except FileNotFoundError:
            return False

    if not wait_until(ready, timeout, step=0.0005):
        raise RuntimeError(f"the job did not write {path} within {timeout:g}s")
    with open(path) as f:
        return float(f.read())


def _start_workers(bench: Bench, db: str, folder: str) -> subprocess.Popen:
    bench.cli(db, "config", "set", "max-retries", "3")  # schema, outside the measurement
    log = open(f"{folder}/worker.log", "wb")  # noqa: SIM115 - kept open while it runs
    proc = subprocess.Popen(bench.cli_argv(db, "worker", "start", "--count", "2"),
                            env=bench.env(), stdout=log, stderr=log, start_new_session=True)

    def registered() -> bool:
        return len(json.loads(bench.cli(db, "status", "--json"))["workers"]) == 2

    if not wait_until(registered, 30, step=0.1):
        stop_process(proc)
        raise RuntimeError("workers did not register within 30 s")
    time.sleep(1.0)
    return proc


def _latencies(bench: Bench, db: str, folder: str, samples: int) -> dict[str, list[float]]:
    """Per sample, three measurements: the CLI enqueue, the API enqueue, the direct spawn."""
    gaps = bench.sizes.pickup_gaps
    found: dict[str, list[float]] = {"cli": [], "api": [], "direct": []}
    api = subprocess.Popen([bench.python, "-c", API_ENQUEUER, db], env=bench.env(),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert api.stdin is not None and api.stdout is not None
        api.stdout.readline()  # connected
        for i in range(samples):
            time.sleep(gaps[i % len(gaps)])
            stamp = f"{folder}/cli-{i}"
            job = json.dumps({"command": f"date +%s.%N > {stamp}"})
            subprocess.run(bench.cli_argv(db, "enqueue", job), env=bench.env(), check=True,
                           stdout=subprocess.DEVNULL)
            returned = time.time()
            found["cli"].append(_read_stamp(stamp) - returned)

            time.sleep(gaps[(i + 2) % len(gaps)])
            stamp = f"{folder}/api-{i}"
            api.stdin.write(f"date +%s.%N > {stamp}\n")
            returned = float(api.stdout.readline())
            found["api"].append(_read_stamp(stamp) - returned)

            stamp = f"{folder}/direct-{i}"
            spawned = time.time()
            subprocess.run(["sh", "-c", f"date +%s.%N > {stamp}"], check=True)
            found["direct"].append(_read_stamp(stamp) - spawned)
    finally:
        if api.stdin is not None:
            api.stdin.close()  # its loop ends at end of input, without a KeyboardInterrupt
        with contextlib.suppress(subprocess.TimeoutExpired):
            api.wait(5)
        stop_process(api, grace=5)
    return found


def _idle_cpu(bench: Bench, db: str, workers: subprocess.Popen, seconds: float) -> tuple:
    pollers = [subprocess.Popen([bench.python, "-c", POLLER, db], env=bench.env())
               for _ in range(2)]
    try:
        time.sleep(1.0)
        tree = process_tree(workers.pid)
        before, base_before = cpu_seconds(tree), cpu_seconds([p.pid for p in pollers])
        time.sleep(seconds)
        after, base_after = cpu_seconds(tree), cpu_seconds([p.pid for p in pollers])
    finally:
        for p in pollers:
            p.kill()
            p.wait()
    return (100 * (after - before) / seconds, 100 * (base_after - base_before) / seconds,
            len(tree))


def _pickup_rows(backend: str, found: dict[str, list[float]], p50_target: float,
                 p99_target: float | None) -> list[Row]:
    base = f"direct spawn of the same command: p50 {fmt_ms(median(found['direct']))}"
    target = f"p50 <= {p50_target * 1000:g} ms" + (
        f", p99 <= {p99_target * 1000:g} ms" if p99_target else "")
    rows = []
    for key, label in (("cli", "CLI `enqueue` process exits → command starts"),
                       ("api", "`Queue.enqueue()` returns (commit done) → command starts")):
        values = found[key]
        p50, p99 = median(values), percentile(values, 99)
        met = p50 <= p50_target and (p99_target is None or p99 <= p99_target)
        rows.append(Row("5 idle pickup", f"{label}, {backend}, {len(values)} samples",
                        f"p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}, max {fmt_ms(max(values))}",
                        base, target, met))
    return rows


def run(bench: Bench) -> list[Row]:
    folder = bench.fresh_dir("pickup")
    samples = bench.sizes.pickup_samples
    gaps = ", ".join(f"{g:g}" for g in bench.sizes.pickup_gaps)
    bench.notes.append(
        f"figure 5: idle gaps before each enqueue cycle through {gaps} s. A negative latency "
        "means the job had started before the enqueue process finished exiting (its "
        "connection close and interpreter shutdown come after the commit); the API row "
        "times from the commit itself.")

    db = f"{folder}/queue.db"
    bench.log(f"figure 5: {samples} samples on SQLite")
    workers = _start_workers(bench, db, folder)
    try:
        found = _latencies(bench, db, folder, samples)
        bench.log(f"  idle CPU over {bench.sizes.idle_cpu_seconds:g} s")
        cpu, base_cpu, procs = _idle_cpu(bench, db, workers, bench.sizes.idle_cpu_seconds)
    finally:
        stop_process(workers)
    rows = _pickup_rows("SQLite", found, TARGET_P50, TARGET_P99)
    rows.append(Row("5 idle CPU", f"idle `worker start --count 2`, {procs} processes, "
                    f"{bench.sizes.idle_cpu_seconds:g} s", f"{cpu:.2f}% of a core",
                    f"2 bare `PRAGMA data_version` pollers (20 ms): {base_cpu:.2f}%",
                    f"< {TARGET_IDLE_CPU:g}%", cpu < TARGET_IDLE_CPU))

    pg = Postgres(bench)
    missing = pg.unusable()
    if missing:
        rows.append(Row("5 idle pickup", "enqueue → command starts, PostgreSQL", missing,
                        target="p50 <= 10 ms"))
        return rows
    url = pg.create()
    try:
        pg_folder = bench.fresh_dir("pickup-pg")
        bench.log(f"figure 5: {samples} samples on PostgreSQL")
        workers = _start_workers(bench, url, pg_folder)
        try:
            found = _latencies(bench, url, pg_folder, samples)
        finally:
            stop_process(workers)
    finally:
        pg.drop(url)
    return rows + _pickup_rows("PostgreSQL", found, TARGET_PG_P50, None)
