"""Figure 4: `enqueue --file` of a JSON Lines file of 100,000 jobs, one CLI process.

Jobs carry ids, as in the seed's examples. Rate = jobs / wall time of the whole call (start-up,
parsing, validation, insert, commit). The baseline is the floor for SQLite: a bare script in
the same interpreter that reads the same file with json and sends the store's own
`insert_job_batch` statement as the store sends it (several rows per INSERT, multirow.py),
with positional parameters built straight from the parsed lines, one transaction,
synchronous=FULL like the CLI. What it leaves out is queuectl's own work: checking each job,
building its row, reporting its id.
"""

from __future__ import annotations

import shutil

from common import Bench, Postgres, Row, fmt_rate, interleaved, median, remove_sqlite, write_jobs

TARGET_SQLITE = 50_000
TARGET_PG = 20_000

RAW_INSERT = """
import json, os, sqlite3, sys, time
from queuectl import sql
db, path = sys.argv[1], sys.argv[2]
now, cwd = time.time(), os.getcwd()
with open(path) as f:
    specs = [json.loads(line) for line in f if line.strip()]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA synchronous = FULL")
conn.execute("BEGIN IMMEDIATE")
statement = sql.load("sqlite")["insert_job_batch"]
try:
    from queuectl.store.multirow import MultiRowInsert
except ImportError:  # an older tree (bench/run.py --src): it ran executemany
    conn.executemany(statement, [
        {"id": s["id"], "command": s["command"], "state": "pending", "max_retries": 3,
         "now": now, "created_at": now, "updated_at": now, "run_at": now, "priority": 0,
         "queue": "default", "timeout": None, "cwd": cwd, "env": None}
        for s in specs])
else:
    multi = MultiRowInsert.of(statement, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    assert multi.names == ["id", "command", "state", "max_retries", "created_at",
                           "updated_at", "run_at", "priority", "queue", "timeout", "cwd",
                           "env"], multi.names
    for start in range(0, len(specs), multi.most):
        chunk = specs[start : start + multi.most]
        params = []
        for s in chunk:
            params += (s["id"], s["command"], "pending", 3, now, now, now, 0, "default", None,
                       cwd, None)
        conn.execute(multi.text(len(chunk)), params)
conn.execute("COMMIT")
conn.close()
"""


def run(bench: Bench) -> list[Row]:
    jobs = bench.sizes.bulk_jobs
    folder = bench.fresh_dir("bulk")
    jobs_file = write_jobs(f"{folder}/jobs.jsonl", jobs, ids="bulk-")
    db, template, raw_db = f"{folder}/queue.db", f"{folder}/template.db", f"{folder}/raw.db"
    bench.cli(template, "config", "set", "max-retries", "3")  # an empty queue, real schema
    pg = Postgres(bench)
    pg_missing = pg.unusable()

    def queuectl_sqlite() -> float:
        remove_sqlite(db)
        return jobs / bench.timed(bench.cli_argv(db, "enqueue", "--file", jobs_file))

    def raw_sqlite() -> float:
        remove_sqlite(raw_db)
        shutil.copyfile(template, raw_db)
        return jobs / bench.timed([bench.python, "-c", RAW_INSERT, raw_db, jobs_file])

    def queuectl_pg() -> float:
        url = pg.create()
        try:
            bench.cli(url, "config", "set", "max-retries", "3")  # schema first, untimed
            return jobs / bench.timed(bench.cli_argv(url, "enqueue", "--file", jobs_file))
        finally:
            pg.drop(url)

    groups = [[("queuectl-sqlite", queuectl_sqlite), ("raw-sqlite", raw_sqlite)]]
    if not pg_missing:
        groups.append([("queuectl-pg", queuectl_pg)])
    bench.log(f"figure 4: {jobs} jobs per file, {bench.sizes.bulk_rounds} rounds")
    rates = interleaved(bench.sizes.bulk_rounds, groups, bench)
    q, raw = median(rates["queuectl-sqlite"]), median(rates["raw-sqlite"])
    rows = [Row("4 bulk enqueue", f"`enqueue --file` {jobs:,} jobs (JSON Lines), SQLite",
                f"{fmt_rate(q)} ({jobs / q:.2f} s)",
                f"json + sqlite3, the same INSERTs: {fmt_rate(raw)} ({jobs / raw:.2f} s)",
                f">= {TARGET_SQLITE:,} jobs/s", q >= TARGET_SQLITE)]
    if pg_missing:
        rows.append(Row("4 bulk enqueue", f"`enqueue --file` {jobs:,} jobs, PostgreSQL",
                        pg_missing, target=f">= {TARGET_PG:,} jobs/s"))
    else:
        p = median(rates["queuectl-pg"])
        rows.append(Row("4 bulk enqueue", f"`enqueue --file` {jobs:,} jobs, PostgreSQL",
                        f"{fmt_rate(p)} ({jobs / p:.2f} s)", f"SQLite: {fmt_rate(q)}",
                        f">= {TARGET_PG:,} jobs/s", p >= TARGET_PG))
    return rows
