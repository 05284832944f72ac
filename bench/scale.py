"""Figure 6: does a big history slow the queue down?

A SQLite queue holding 1,000,000 completed jobs (each with its attempt row, inserted in one
transaction straight into the real schema) against an empty one, in alternating rounds:
figure 1's throughput (`worker start --count 2 --burst` over the same pending jobs), the
wall time of `status` and `list --state pending --limit 50` while those jobs wait, and each
dashboard page's time over HTTP (dashboard_pages.py), /metrics included. Then `status` once
more, with as many runs finished within its 15 minutes, as a steady load leaves them.
"""

from __future__ import annotations

import sqlite3
import time

import dashboard_pages
from common import (
    Bench,
    Row,
    fmt_ms,
    fmt_s,
    median,
    ratio_median,
    remove_sqlite,
    sqlite_counts,
    write_jobs,
)

TARGET_THROUGHPUT_RATIO = 0.9
TARGET_CLI = 0.100

FILL = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :rows)
INSERT INTO jobs (id, command, state, attempts, max_retries, created_at, updated_at, run_at,
                  runs, exit_code, finished_at, cwd)
SELECT printf('old-%08d', x), 'true', 'completed', 1, 3, :t0 + x * :step,
       :t0 + x * :step + 0.005, :t0 + x * :step, 1, 0, :t0 + x * :step + 0.005, '/tmp'
FROM n
"""
FILL_ATTEMPTS = """
INSERT INTO attempts (job_id, run, worker_id, host, started_at, finished_at, outcome, exit_code)
SELECT id, 1, 'old-worker', 'old-host', run_at, finished_at, 'completed', 0 FROM jobs
WHERE state = 'completed'
"""
# The run counters, as migration 8 fills them: the fill goes around the store, which counts
# what it records (DECISIONS.md §34). The job counts are rebuilt by `status --recount`.
RECOUNT_RUNS = ("DELETE FROM attempt_counts", """
INSERT INTO attempt_counts (queue, outcome, shard, runs)
SELECT j.queue, a.outcome, 0, COUNT(*) FROM attempts a JOIN jobs j ON j.id = a.job_id
GROUP BY j.queue, a.outcome
""")


def fill(db: str, rows: int, within: float | None = None) -> float:
    """Insert `rows` completed jobs with their history, finished 10 ms apart and more than an
    hour ago, or evenly over the last `within` seconds (a steady load that just ran); returns
    the seconds it took."""
    start = time.perf_counter()
    if within is None:
        t0, step = time.time() - rows * 0.01 - 3600, 0.01
    else:
        t0, step = time.time() - within, within / rows
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(FILL, {"rows": rows, "t0": t0, "step": step})
        conn.execute(FILL_ATTEMPTS)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'attempt_counts'").fetchone():
            for statement in RECOUNT_RUNS:
                conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


def run(bench: Bench) -> list[Row]:
    rows, jobs = bench.sizes.scale_rows, bench.sizes.throughput_jobs
    samples = bench.sizes.scale_cli_samples
    folder = bench.fresh_dir("scale")
    jobs_file = write_jobs(f"{folder}/jobs.jsonl", jobs)
    big, empty = f"{folder}/big.db", f"{folder}/empty.db"
    bench.cli(big, "config", "set", "max-retries", "3")  # the real schema, real code
    seconds = fill(big, rows)
    bench.cli(big, "status", "--recount")  # the job counts, which the fill went around
    bench.log(f"figure 6: {rows:,} completed jobs inserted in {seconds:.1f} s")
    status: dict[str, list[float]] = {"big": [], "empty": []}
    listing: dict[str, list[float]] = {"big": [], "empty": []}
    by_queue: dict[str, list[float]] = {"big": [], "empty": []}
    drain: dict[str, list[float]] = {"big": [], "empty": []}
    pages: dict[str, dict[str, list[float]]] = {
        "big": {p: [] for p in dashboard_pages.PAGES},
        "empty": {p: [] for p in dashboard_pages.PAGES}}
    web = dashboard_pages.has_web_extra(bench)
    if not web:
        bench.log("figure 6: no dashboard pages (install the extra: pip install '.[web]')")

    for r in range(bench.sizes.scale_rounds):
        for which in (("big", "empty") if r % 2 == 0 else ("empty", "big")):
            db = big if which == "big" else empty
            before = 0
            if which == "empty":
                remove_sqlite(empty)
            else:
                before = sqlite_counts(db).get("completed", 0)
            bench.cli(db, "enqueue", "--file", jobs_file)
            bench.timed(bench.cli_argv(db, "status"))  # warm this file's pages once
            for _ in range(samples):
                status[which].append(bench.timed(bench.cli_argv(db, "status")))
                listing[which].append(bench.timed(bench.cli_argv(
                    db, "list", "--state", "pending", "--limit", "50")))
                by_queue[which].append(bench.timed(bench.cli_argv(
                    db, "list", "--queue", "no-such-queue", "--limit", "50")))
            if web:
                for page, times in dashboard_pages.page_times(bench, db, samples).items():
                    pages[which][page] += times
            drain[which].append(bench.timed(bench.cli_argv(
                db, "worker", "start", "--count", "2", "--burst", "--quiet")))
            if sqlite_counts(db).get("completed", 0) - before != jobs:
                raise RuntimeError(f"the {which} queue did not complete all {jobs} jobs")
            bench.log(f"  round {r + 1} {which}: drain {drain[which][-1]:.2f} s, status "
                      f"{status[which][-1] * 1000:.0f} ms, list {listing[which][-1] * 1000:.0f} ms")

    big_t, empty_t = median(drain["big"]), median(drain["empty"])
    ratio = ratio_median(drain["empty"], drain["big"])
    result = [Row("6 scale", f"`worker start --count 2 --burst`, {jobs} jobs, with {rows:,} "
                  "completed jobs in the table",
                  f"{jobs / big_t:,.0f} jobs/s ({fmt_s(big_t)}); {ratio:.2f} of empty",
                  f"empty table: {jobs / empty_t:,.0f} jobs/s ({fmt_s(empty_t)})",
                  "within 10% of empty", ratio >= TARGET_THROUGHPUT_RATIO)]
    for label, values in (("`status`", status),
                          ("`list --state pending --limit 50`", listing),
                          ("`list --queue no-such-queue --limit 50`", by_queue)):
        b, e = median(values["big"]), median(values["empty"])
        result.append(Row("6 scale", f"{label} wall time, {rows:,} completed + {jobs} pending",
                          fmt_ms(b), f"{jobs} pending only: {fmt_ms(e)}", "< 100 ms",
                          b < TARGET_CLI))
    # A history that just happened: `status` counts the runs of its last 15 minutes, which a
    # steady load fills (DECISIONS.md §37). 14 minutes, so that all of them stay in its window
    # while the samples are taken.
    busy = f"{folder}/busy.db"
    bench.cli(busy, "config", "set", "max-retries", "3")
    fill(busy, rows, within=14 * 60)
    bench.cli(busy, "status", "--recount")
    bench.timed(bench.cli_argv(busy, "status"))
    recent = [bench.timed(bench.cli_argv(busy, "status")) for _ in range(samples)]
    result.append(Row("6 scale", f"`status` wall time, {rows:,} runs finished in the last 14 "
                      f"minutes (a steady {rows / 840:,.0f} a second)", fmt_ms(median(recent)),
                      f"{jobs} pending only: {fmt_ms(median(status['empty']))}", "< 100 ms",
                      median(recent) < TARGET_CLI))
    if web:
        slowest = {which: max(pages[which], key=lambda p: median(pages[which][p]))
                   for which in pages}
        b, e = median(pages["big"][slowest["big"]]), median(pages["empty"][slowest["empty"]])
        result.append(Row(
            "6 scale", f"dashboard: the slowest of its {len(dashboard_pages.PAGES)} pages "
            f"(/metrics included), one HTTP GET, {rows:,} completed + {jobs} pending",
            f"{fmt_ms(b)} (`{slowest['big']}`)",
            f"{jobs} pending only: {fmt_ms(e)} (`{slowest['empty']}`)", "< 100 ms",
            b < TARGET_CLI))
        bench.notes.append("figure 6, each dashboard page's median GET, big / empty queue: " +
                           "; ".join(f"`{p}` {fmt_ms(median(pages['big'][p]))} / "
                                     f"{fmt_ms(median(pages['empty'][p]))}"
                                     for p in dashboard_pages.PAGES))
    return result
