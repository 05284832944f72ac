"""Figure 2: the queue's own cost per job, without running any command.

Two processes (multiprocessing, spawn) claim and complete pre-enqueued jobs the way Worker
does, with durable=False as workers open the store: in batches (JobStore.record_batch: the
results of up to BATCH_MOST jobs and the claim of as many next ones in one transaction, the
batch growing 1, 2, 4, 8, 16 as the worker's does), each job's start and result written to
its journal as the worker writes them (a file on SQLite, DECISIONS.md 30; the unlogged
worker_journal table on PostgreSQL, 31). The baseline sends the same named SQL (finish_job +
insert_attempt and the run counters' statements, or finish_job_with_attempt, claim_any_many,
the journal's statements on PostgreSQL) through bare sqlite3, so the gap between the two is
the store layer's Python; on PostgreSQL, through bare psycopg (_raw_pg_loop).

Run by the harness as `python overhead.py MODE DB PROCS` in a child with this checkout's src on
PYTHONPATH; prints `jobs seconds`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import time

from common import Bench, Postgres, Row, fmt_rate, interleaved, median, remove_sqlite, write_jobs
from hop import delayed

PROCESSES = 2
TARGET_SQLITE = 10_000
TARGET_PG = 3_000
HOP_DELAY_MS = 0.5  # asked of the proxy each way; the round trip it makes is measured
HOP_JOBS = 1_000  # a few hundred jobs/s across the hop: fewer jobs keep the rounds short


# -- the child side -------------------------------------------------------------------------


def indexed_claim(query: str) -> str | None:
    """The claim with its subquery pinned to the jobs_ready index, or None if the shipped
    query does not have the shape this patch expects (already fixed, or rewritten)."""
    if "INDEXED BY" in query or query.count("SELECT seq FROM jobs\n") != 1:
        return None
    return query.replace("SELECT seq FROM jobs\n", "SELECT seq FROM jobs INDEXED BY jobs_ready\n")


def _as_workers_run() -> None:
    """Both loops get the allocator settings of `worker start`'s children (queuectl.heap),
    where the tree under test has them: without, a process whose heap top happens to sit near
    glibc's trim threshold pays page faults on every job, which is layout luck, not cost."""
    try:
        from queuectl.heap import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory()


def _store_loop(db: str, fixed: bool, ready, go, out) -> None:
    from queuectl.store import open_store
    from queuectl.worker import new_identity

    _as_workers_run()
    store = open_store(db, durable=False)
    if fixed:  # diagnostic: the same store with the claim kept on its index (this process only)
        queries = dict(store.db.queries)
        queries["claim_any"] = indexed_claim(queries["claim_any"])
        store.db.queries = queries
    identity = new_identity()
    lease = store.settings()["lease-seconds"]
    store.register_worker(identity, time.time())
    ready.put(os.getpid())
    go.wait()
    start, done = time.perf_counter(), 0
    done = _batches(store, identity, lease)
    out.put((start, time.perf_counter(), done))
    store.close()


def _batches(store, identity, lease: float) -> int:
    """A worker's path with no command: the first claim alone, then each batch's results
    recorded in the transaction that claims the next batch, every job's start and result
    written to the journal first (a file next to a SQLite queue, the worker_journal table of
    a PostgreSQL one), the journal emptied by each commit (a table's) or after it (a file)."""
    from queuectl.worker import BATCH_MOST

    if store.db.dialect == "sqlite":
        from queuectl.journal import Journal, journal_path

        journal = Journal(journal_path(os.path.realpath(store.db.path), identity.id))
    else:
        from queuectl.journal_table import TableJournal

        journal = TableJournal(store, identity.id)
    done, size = 0, 1
    _, batch = store.record_batch([], identity, time.time(), lease, claim=1)
    while batch:
        records = []
        for job in batch:
            now = time.time()
            journal.started(job, now)
            journal.ended(job, now, now, 0, b"")
            records.append(lambda job=job, now=now: store.complete(job, now, 0))
        done += len(batch)
        size = min(size * 2, BATCH_MOST)
        clear = journal.clear_with_commit()  # PostgreSQL: in the batch's transaction
        _, batch = store.record_batch(records, identity, time.time(), lease, claim=size,
                                      clear_journal=clear)
        journal.committed(cleared=clear is not None)
    journal.close(remove=True)
    return done


def _raw_loop(db: str, fixed: bool, ready, go, out) -> None:
    import sqlite3

    from queuectl import sql

    q = dict(sql.load("sqlite"))
    if fixed:
        q["claim_any"] = indexed_claim(q["claim_any"])
    _as_workers_run()
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous = NORMAL")
    worker = f"raw:{os.getpid()}"
    ready.put(os.getpid())
    go.wait()
    from queuectl.worker import BATCH_MOST

    start, done = time.perf_counter(), 0
    batch: list = []
    while True:  # the worker's path: record a batch and claim the next in one transaction
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        for job in batch:
            conn.execute(q["finish_job"], {
                "id": job["id"], "token": job["lease_token"], "state": "completed",
                "attempts": job["attempts"] + 1, "run_at": job["run_at"], "exit_code": 0,
                "error": None, "finished_at": now, "now": now, "crashes": job["crashes"]})
            conn.execute(q["insert_attempt"], {
                "job_id": job["id"], "run": job["runs"], "worker_id": worker, "host": "h",
                "started_at": job["started_at"], "finished_at": now, "outcome": "completed",
                "exit_code": 0, "error": None, "output_bytes": None})
            done += 1
        if batch and "count_finished_minutes" in q:  # the run counters and the finished
            # runs per minute (schemas 8 and 10) as the store counts them: the whole batch in
            # one statement each
            queue = batch[-1]["queue"]  # every job of the benchmark is in one queue
            conn.execute(q["count_recorded_runs"], {
                "queue": queue, "outcome": "completed", "runs": len(batch)})
            conn.execute(q["count_finished_minutes"], {
                "minute": int(now // 60), "queue": queue, "finished": len(batch), "failed": 0})
        elif batch and "count_recorded_runs" in q:  # schemas 8 and 9 (bench --src, older
            # code): the last result on its own, the held ones before it in one statement
            queue = batch[-1]["queue"]
            conn.execute(q["count_recorded_run"], {"queue": queue, "outcome": "completed"})
            if len(batch) > 1:
                conn.execute(q["count_recorded_runs"], {
                    "queue": queue, "outcome": "completed", "runs": len(batch) - 1})
        batch = conn.execute(q["claim_any_many"], {
            "worker_id": worker, "host": "h", "token": os.urandom(8).hex(),
            "lease_until": now + 15, "now": now, "most": BATCH_MOST}).fetchall()
        conn.execute("COMMIT")
        if not batch:
            break
    out.put((start, time.perf_counter(), done))
    conn.close()


def _raw_pg_loop(db: str, fixed: bool, ready, go, out) -> None:
    """PostgreSQL's baseline: the statements the store sends (DECISIONS 31), through psycopg
    with nothing of queuectl around them. Per batch, one pipeline: the held results
    (finish_job_with_attempt each) and the journal's lines cleared, the claim of the next
    batch (claim_any_many), COMMIT, with the server's default synchronous_commit as the store
    keeps it (DECISIONS 8). Per job, one journal_write: its start, with the result of the job
    before it."""
    import json

    import psycopg
    from psycopg.rows import dict_row

    from queuectl import sql
    from queuectl.worker import BATCH_MOST

    q = dict(sql.load("postgres"))
    _as_workers_run()
    conn = psycopg.connect(db, row_factory=dict_row, autocommit=True)
    worker = f"raw:{os.getpid()}"

    def line(job, started, finished=None):
        return {"worker_id": worker, "job_id": job["id"], "token": job["lease_token"],
                "started_at": started, "exit_code": None if finished is None else 0,
                "finished_at": finished, "output": None if finished is None else ""}

    ready.put(os.getpid())
    go.wait()
    start, done = time.perf_counter(), 0
    held: list = []
    while True:
        now = time.time()
        with conn.pipeline():
            conn.execute("BEGIN")
            if held:
                conn.execute(q["journal_clear"], {"worker_id": worker, "keep": ""})
            for job in held:
                conn.execute(q["finish_job_with_attempt"], {
                    "id": job["id"], "token": job["lease_token"], "state": "completed",
                    "attempts": job["attempts"] + 1, "run_at": job["run_at"], "exit_code": 0,
                    "error": None, "finished_at": now, "now": now, "crashes": job["crashes"],
                    "run": job["runs"], "worker_id": worker, "host": "h",
                    "started_at": job["started_at"], "outcome": "completed",
                    "output_bytes": None})
            claim = conn.execute(q["claim_any_many"], {
                "worker_id": worker, "host": "h", "token": os.urandom(8).hex(),
                "lease_until": now + 15, "now": now, "most": BATCH_MOST})
            conn.execute("COMMIT")
        done += len(held)
        batch = claim.fetchall()
        if not batch:
            break
        unsent: list = []
        for job in batch:
            now = time.time()
            conn.execute(q["journal_write"], {"rows": json.dumps(unsent + [line(job, now)])})
            unsent = [line(job, now, now)]
        held = batch
    out.put((start, time.perf_counter(), done))
    conn.close()


def drive(mode: str, db: str, processes: int) -> tuple[int, float]:
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    if mode.startswith("store"):
        target = _store_loop
    else:
        target = _raw_pg_loop if db.startswith("postgres") else _raw_loop
    fixed = mode.endswith("-fixed")
    procs = [ctx.Process(target=target, args=(db, fixed, ready, go, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    jobs = sum(r[2] for r in results)
    return jobs, max(r[1] for r in results) - min(r[0] for r in results)


# -- the harness side -----------------------------------------------------------------------


def _measure(bench: Bench, mode: str, db: str, jobs_file: str, jobs: int,
             via: str | None = None) -> float:
    """Jobs/s of `mode` draining `jobs` from a fresh `db`; the workers reach it through `via`
    (the same database behind the delay proxy) when given."""
    if not db.startswith("postgres"):
        remove_sqlite(db)
    bench.cli(db, "enqueue", "--file", jobs_file)
    out = subprocess.run([bench.python, os.path.abspath(__file__), mode, via or db,
                          str(PROCESSES)], env=bench.env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"overhead driver failed: {out.stderr[-2000:]}")
    done, seconds = out.stdout.split()
    if int(done) != jobs:
        raise RuntimeError(f"{mode} finished {done} of {jobs} jobs")
    return jobs / float(seconds)


def _batch_most(bench: Bench) -> str:
    """The tree under test's batch size (an older tree has none: one job per commit)."""
    check = subprocess.run([bench.python, "-c", "from queuectl.worker import BATCH_MOST; "
                            "print(BATCH_MOST)"], env=bench.env(), capture_output=True, text=True)
    return check.stdout.strip() or "1"


def _claim_patchable(bench: Bench) -> bool:
    """Whether the shipped claim misses its index and the pinned variant applies."""
    check = subprocess.run([bench.python, "-c", _PLAN_CHECK], env=bench.env(),
                           capture_output=True, text=True, cwd=os.path.dirname(__file__))
    if check.returncode != 0:
        bench.notes.append(f"figure 2: could not read the claim's query plan: "
                           f"{check.stderr.strip()[-300:]}")
        return False
    plan = check.stdout.strip()
    if plan == "n/a":
        return False
    bench.notes.append(f"SQLite plan of the shipped claim (`claim_any`): {plan}")
    return "jobs_ready" not in plan


_PLAN_CHECK = """
import os, sqlite3, tempfile, time
from queuectl import sql
from queuectl.store import open_store
from overhead import indexed_claim
path = os.path.join(tempfile.mkdtemp(), "plan.db")
open_store(path).close()
query = sql.load("sqlite")["claim_any"]
if indexed_claim(query) is None:
    print("n/a")
else:
    conn = sqlite3.connect(path)
    params = {"worker_id": "w", "host": "h", "token": "t", "lease_until": 1.0, "now": 1.0}
    print("; ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)))
"""


def run(bench: Bench) -> list[Row]:
    jobs = bench.sizes.overhead_jobs
    folder = bench.fresh_dir("overhead")
    jobs_file = write_jobs(f"{folder}/jobs.jsonl", jobs)
    db = f"{folder}/queue.db"
    pg = Postgres(bench)
    pg_missing = pg.unusable()
    pg_urls: list[str] = []

    def pg_round(mode: str = "store") -> float:
        url = pg.create()
        pg_urls.append(url)
        try:
            return _measure(bench, mode, url, jobs_file, jobs)
        finally:
            pg.drop(url)

    groups = [[("store-sqlite", lambda: _measure(bench, "store", db, jobs_file, jobs)),
               ("raw-sqlite", lambda: _measure(bench, "raw", db, jobs_file, jobs))]]
    patchable = _claim_patchable(bench)
    if patchable:
        groups.append([
            ("store-fixed", lambda: _measure(bench, "store-fixed", db, jobs_file, jobs)),
            ("raw-fixed", lambda: _measure(bench, "raw-fixed", db, jobs_file, jobs)),
        ])
    hop: contextlib.ExitStack | None = None
    hop_jobs = min(jobs, HOP_JOBS)
    hop_file = write_jobs(f"{folder}/hop-jobs.jsonl", hop_jobs)
    hop_rtt = 0.0
    if not pg_missing:
        hop = contextlib.ExitStack()
        # One proxy for the server; its round trip is measured on the admin database.
        proxied_admin, hop_rtt = hop.enter_context(delayed(pg.admin_url, HOP_DELAY_MS))

        def pg_hop_round() -> float:
            url = pg.create()
            through = proxied_admin.rpartition("/")[0] + "/" + url.rpartition("/")[2]
            try:
                return _measure(bench, "store", url, hop_file, hop_jobs, via=through)
            finally:
                pg.drop(url)

        groups.append([("store-pg", pg_round), ("raw-pg", lambda: pg_round("raw")),
                       ("store-pg-hop", pg_hop_round)])
    bench.log(f"figure 2: {jobs} jobs, {PROCESSES} processes, {bench.sizes.rounds} rounds")
    try:
        rates = interleaved(bench.sizes.rounds, groups, bench)
    finally:
        if hop is not None:
            hop.close()
    store, raw = median(rates["store-sqlite"]), median(rates["raw-sqlite"])
    rows = [Row("2 queue overhead", f"claim + complete, no command, 2 processes, SQLite, "
                f"{jobs:,} jobs pending at the start, journaled batches of up to "
                f"{_batch_most(bench)} as a worker runs short jobs",
                f"{fmt_rate(store)} ({1e6 * PROCESSES / store:.0f} µs per job per process)",
                f"same SQL through bare sqlite3: {fmt_rate(raw)}",
                f">= {TARGET_SQLITE:,} jobs/s", store >= TARGET_SQLITE)]
    if patchable:
        fixed, raw_fixed = median(rates["store-fixed"]), median(rates["raw-fixed"])
        rows.append(Row("2 queue overhead (diagnostic)", "the same, with the claim's subquery "
                        "pinned to `INDEXED BY jobs_ready` in the benchmark process only",
                        f"{fmt_rate(fixed)} ({1e6 * PROCESSES / fixed:.0f} µs per job per "
                        "process)", f"bare sqlite3, same pinned SQL: {fmt_rate(raw_fixed)}",
                        f">= {TARGET_SQLITE:,} jobs/s", fixed >= TARGET_SQLITE))
    if pg_missing:
        rows.append(Row("2 queue overhead", "claim + complete, 2 processes, PostgreSQL",
                        pg_missing, target=f">= {TARGET_PG:,} jobs/s"))
    else:
        value, raw_pg = median(rates["store-pg"]), median(rates["raw-pg"])
        rows.append(Row("2 queue overhead", "claim + complete, 2 processes, PostgreSQL, "
                        f"journaled batches of up to {_batch_most(bench)} (the journal in "
                        "an unlogged table)",
                        fmt_rate(value), f"same SQL through bare psycopg: {fmt_rate(raw_pg)}",
                        f">= {TARGET_PG:,} jobs/s", value >= TARGET_PG))
        far = median(rates["store-pg-hop"])
        per_job_ms = 1e3 * PROCESSES / far
        rows.append(Row(
            "2 queue overhead (across a hop)",
            f"the same, {hop_jobs:,} jobs, each worker reaching the server through a proxy "
            f"that holds every packet {HOP_DELAY_MS:g} ms each way (bench/hop.py)",
            f"{fmt_rate(far)} ({per_job_ms:.1f} ms per job per process: "
            f"{per_job_ms / hop_rtt:.1f} round trips' worth)",
            f"`SELECT 1` through the proxy: {hop_rtt:.1f} ms per round trip"))
    return rows


if __name__ == "__main__":
    done, seconds = drive(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(done, seconds)
