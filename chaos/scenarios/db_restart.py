"""Scenario 6, the PostgreSQL server restarts while workers are busy, alternately crashed
(`pg_ctl stop -m immediate`) and shut down (`-m fast`). Nothing may be lost, no supervisor may
die, and claiming must resume within 10 s of the server's return.

It runs on a private server (chaos/pgcluster.py): the shared one serves other tests."""

from __future__ import annotations

import random
import time

from chaos.common import Row, Scratch, apply_audit, audit, wait_until
from chaos.pgcluster import PrivateCluster

WORKERS = (2, 2)
RESUME_BOUND = 10.0


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    restarts = 2 if quick else 5
    jobs_n = 100 if quick else 250
    row = Row("6 database restart", backend, jobs=jobs_n, recovery_bound=RESUME_BOUND,
              extra_bound=sum(WORKERS) * restarts)  # a job in flight per worker may rerun
    rng = random.Random()
    resumed: list[float] = []
    with PrivateCluster() as server, Scratch(backend, server.url) as s:
        q = s.queue
        q.fast()
        ids = q.enqueue([{"command": s.side.command("sleep 0.1")} for _ in range(jobs_n)])
        supervisors = [q.start_workers(n) for n in WORKERS]
        for k in range(restarts):
            wait_until(lambda k=k: sum(e.ended for e in s.side.executions())
                       >= (k + 1) * jobs_n // (restarts + 2), 120, f"progress before restart "
                       f"{k + 1}", interval=0.1)
            server.stop("immediate" if k % 2 == 0 else "fast")
            row.faults += 1
            time.sleep(rng.uniform(1, 3))  # the outage itself: a chosen length, not a wait
            server.start()  # -w: returns once the server accepts connections
            back = time.time()
            first = wait_until(lambda b=back: [e.started for e in s.side.executions()
                                               if e.started > b], 60,
                               f"a job to start after restart {k + 1}", interval=0.05)
            resumed.append(min(first) - back)
        wait_until(lambda: _drained(q), 300, "every job to finish", interval=0.5)
        for workers in supervisors:
            if not workers.running():
                row.problems.append("a supervisor died during the outages")
            code = workers.stop(60)
            if code != 0:
                row.problems.append(f"a supervisor exited {code} after a warm stop")
            if "Traceback" in workers.log():
                row.problems.append("a traceback in the workers' log")
        row.leftovers = len(s.leftovers())
        apply_audit(row, audit(q, s.side, {job_id: "completed" for job_id in ids}))
        row.recovery = max(resumed) if resumed else None
    return row


def _drained(q) -> bool:
    counts = q.counts()
    return all(counts.get(k, 0) == 0 for k in ("pending", "processing", "failed"))
