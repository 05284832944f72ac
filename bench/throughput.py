"""Figure 1: shell-job throughput of `worker start --count N --burst` against xargs -PN.

Both run the same `sh -c true` N at a time: queuectl's jobs are enqueued beforehand (bulk
`enqueue --file`, not timed), xargs reads as many lines. The clock covers starting the
supervisor and its workers, like starting xargs. Peers drain the same jobs in the same rounds.
So does queuectl with 2 workers on the local PostgreSQL server (no target: the issue sets
none), with the CPU the rest of the machine spent meanwhile, mostly that server's, which here
shares the two cores with the workers and their commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from common import (
    Bench,
    Postgres,
    Row,
    fmt_s,
    interleaved,
    median,
    ratio_median,
    remove_sqlite,
    sqlite_counts,
    write_jobs,
)
from peers import (
    RQ_MAX_JOBS,
    TSP_MAX_QUEUED,
    huey_drain,
    huey_unavailable,
    rq_drain,
    rq_unavailable,
    tsp_drain,
    tsp_unavailable,
)

COUNTS = (2, 4, 8)
TARGETS = {2: 0.9, 4: 0.8, 8: 0.8}


def queuectl_drain(bench: Bench, jobs_file: str, jobs: int, count: int, db: str) -> float:
    """Fresh queue of `jobs` pending jobs, drained by `count` workers: wall seconds."""
    remove_sqlite(db)
    bench.cli(db, "enqueue", "--file", jobs_file)
    elapsed = bench.timed(bench.cli_argv(db, "worker", "start", "--count", str(count),
                                         "--burst", "--quiet"))
    done = sqlite_counts(db).get("completed", 0)
    if done != jobs:
        raise RuntimeError(f"queuectl completed {done} of {jobs} jobs")
    return elapsed


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = f.readline().split()[1:9]
    ticks = sum(int(v) for v in (user, nice, system, irq, softirq, steal))
    return ticks / os.sysconf("SC_CLK_TCK")


def queuectl_pg_drain(bench: Bench, pg: Postgres, jobs_file: str, jobs: int, count: int,
                      elsewhere: list[float]) -> float:
    """As queuectl_drain, on a new database of the local server; appends to `elsewhere` the
    CPU seconds the machine spent outside the timed process tree meanwhile."""
    import psycopg

    url = pg.create()
    try:
        bench.cli(url, "enqueue", "--file", jobs_file)
        busy = machine_busy_seconds()
        elapsed = bench.timed(bench.cli_argv(url, "worker", "start", "--count", str(count),
                                             "--burst", "--quiet"))
        elsewhere.append(machine_busy_seconds() - busy - bench.last_usage[0])
        with psycopg.connect(url) as conn:
            done = conn.execute("SELECT count(*) FROM jobs WHERE state = 'completed'"
                                ).fetchone()[0]
    finally:
        pg.drop(url)
    if done != jobs:
        raise RuntimeError(f"queuectl on PostgreSQL completed {done} of {jobs} jobs")
    return elapsed


# The ceiling of any worker written in Python: N processes that do nothing but start
# `sh -c true` (posix_spawn, as queuectl's workers do) and wait for it, no queue at all. The gap
# between this and queuectl is the queue's own cost; the gap between this and xargs is not.
SPAWN_LOOP = """
import os, sys
count, jobs = int(sys.argv[1]), int(sys.argv[2])
children = []
for i in range(count):
    pid = os.fork()
    if pid == 0:
        for _ in range(jobs // count + (i < jobs % count)):
            os.waitpid(os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ), 0)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def spawn_loop_drain(bench: Bench, jobs: int, count: int) -> float:
    return bench.timed([bench.python, "-c", SPAWN_LOOP, str(count), str(jobs)])


def xargs_drain(bench: Bench, lines_file: str, count: int) -> float:
    return bench.timed(["xargs", f"-P{count}", "-I{}", "sh", "-c", "true"],
                       stdin_path=lines_file)


def run(bench: Bench) -> list[Row]:
    jobs = bench.sizes.throughput_jobs
    folder = bench.fresh_dir("throughput")
    jobs_file = write_jobs(f"{folder}/jobs.jsonl", jobs)
    lines_file = f"{folder}/lines"
    with open(lines_file, "w") as f:
        f.write("x\n" * jobs)
    db = f"{folder}/queue.db"

    usage: dict[str, list[tuple[float, int]]] = {}

    def noting_usage(name: str, drain: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            elapsed = drain()
            usage.setdefault(name, []).append(bench.last_usage)
            return elapsed
        return run

    groups = []
    for count in COUNTS:
        groups.append([
            (f"queuectl-{count}", noting_usage(f"queuectl-{count}", lambda c=count: queuectl_drain(
                bench, jobs_file, jobs, c, db))),
            (f"xargs-{count}", noting_usage(f"xargs-{count}", lambda c=count: xargs_drain(
                bench, lines_file, c))),
            (f"loop-{count}", lambda c=count: spawn_loop_drain(bench, jobs, c)),
        ])
    huey_missing, tsp_missing = huey_unavailable(bench), tsp_unavailable(bench)
    if not huey_missing:
        groups.append([("huey-2", lambda: huey_drain(bench, jobs, 2))])
    tsp_jobs = min(jobs, TSP_MAX_QUEUED)
    if not tsp_missing:
        groups.append([("tsp-2", lambda: tsp_drain(bench, tsp_jobs, 2))])
    rq_missing, rq_jobs = rq_unavailable(bench), min(jobs, RQ_MAX_JOBS)
    if not rq_missing:
        groups.append([("rq-2", lambda: rq_drain(bench, rq_jobs, 2))])
    pg = Postgres(bench)
    pg_missing = pg.unusable()
    pg_elsewhere: list[float] = []
    if not pg_missing:
        groups.append([("queuectl-pg-2", noting_usage("queuectl-pg-2", lambda: queuectl_pg_drain(
            bench, pg, jobs_file, jobs, 2, pg_elsewhere)))])

    bench.log(f"figure 1: {jobs} jobs per run, {bench.sizes.rounds} rounds")
    times = interleaved(bench.sizes.rounds, groups, bench)
    med = {name: median(values) for name, values in times.items()}

    rows = []
    for count in COUNTS:
        q, x = med[f"queuectl-{count}"], med[f"xargs-{count}"]
        ratio = ratio_median(times[f"xargs-{count}"], times[f"queuectl-{count}"])
        rows.append(Row(
            "1 throughput", f"`worker start --count {count} --burst`, {jobs} `true` jobs",
            f"{jobs / q:,.0f} jobs/s ({fmt_s(q)}); ratio **{ratio:.2f}**",
            f"xargs -P{count}: {jobs / x:,.0f} jobs/s ({fmt_s(x)})",
            f"xargs/queuectl >= {TARGETS[count]}", ratio >= TARGETS[count],
        ))
    for count in COUNTS:
        q, loop = med[f"queuectl-{count}"], med[f"loop-{count}"]
        rows.append(Row(
            "1 throughput (ceiling)",
            f"{count} Python processes that only start `sh -c true` (posix_spawn) and wait for "
            f"it, no queue: what any Python worker could reach ({jobs} jobs)",
            f"{jobs / loop:,.0f} jobs/s ({fmt_s(loop)}); xargs/loop "
            f"**{ratio_median(times[f'xargs-{count}'], times[f'loop-{count}']):.2f}**",
            f"queuectl --count {count}: {jobs / q:,.0f} jobs/s, "
            f"{ratio_median(times[f'loop-{count}'], times[f'queuectl-{count}']):.2f} of the loop",
        ))
    bench.notes.append(
        "figure 1, CPU and minor page faults per job of each run's whole process tree "
        "(supervisor, workers, guardians and commands; xargs and its `sh`), medians: " + "; ".join(
            f"{name} {median([u[0] for u in usage[name]]) / jobs * 1e3:.2f} ms, "
            f"{median([u[1] for u in usage[name]]) / jobs:.0f} faults"
            for count in COUNTS for name in (f"queuectl-{count}", f"xargs-{count}")))
    x2 = med["xargs-2"]
    pg_label = (f"`worker start --count 2 --burst` on the local PostgreSQL server, {jobs} "
                "`true` jobs")
    if pg_missing:
        rows.append(Row("1 throughput (PostgreSQL)", pg_label, pg_missing))
    else:
        q_pg = med["queuectl-pg-2"]
        rows.append(Row(
            "1 throughput (PostgreSQL)", pg_label,
            f"{jobs / q_pg:,.0f} jobs/s ({fmt_s(q_pg)}); ratio "
            f"**{ratio_median(times['xargs-2'], times['queuectl-pg-2']):.2f}**",
            f"xargs -P2: {jobs / x2:,.0f} jobs/s ({fmt_s(x2)})"))
        bench.notes.append(
            "figure 1 on PostgreSQL, CPU per job, medians: the process tree "
            f"{median([u[0] for u in usage['queuectl-pg-2']]) / jobs * 1e3:.2f} ms; the rest "
            f"of the machine meanwhile, mostly the server {median(pg_elsewhere) / jobs * 1e3:.2f}"
            " ms. Here the server shares the 2 cores with the workers and their commands; a "
            "server on another machine leaves them the cores, and adds a network round trip "
            "per job (figure 2's hop row).")
    tsp_label = "task-spooler `tsp -S 2`, `tsp -n sh -c true`"
    if tsp_jobs < jobs:
        tsp_label += (f" ({tsp_jobs} jobs: each queued tsp job is a waiting process with a "
                      "socket, and the server stalls near 1,000 of them)")
    for name, label, count, missing in (
        ("huey-2", "Huey: SqliteHuey, 2 process workers, task runs `sh -c true` "
         f"({jobs} tasks)", jobs, huey_missing),
        ("tsp-2", tsp_label, tsp_jobs, tsp_missing),
        ("rq-2", "RQ: 2 `rq worker --burst` processes (its default worker, a forked work horse "
         f"per job), task runs `sh -c true` ({rq_jobs} jobs), Redis on this machine", rq_jobs,
         rq_missing),
    ):
        if missing:
            rows.append(Row("1 throughput (peer)", label, missing))
            continue
        t = med[name]
        rows.append(Row("1 throughput (peer)", label,
                        f"{count / t:,.0f} jobs/s ({fmt_s(t)}); xargs/peer "
                        f"{(count / t) / (jobs / x2):.2f}",
                        f"queuectl --count 2: {jobs / med['queuectl-2']:,.0f} jobs/s, "
                        f"xargs -P2: {jobs / x2:,.0f} jobs/s"))
    return rows
