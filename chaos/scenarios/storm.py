"""Scenario 1, SIGKILL storm: random worker processes SIGKILLed mid-run, each restarted by its
supervisor. Nothing may be lost or finish twice, and each kill may cost at most one re-run."""

from __future__ import annotations

import os
import random
import signal
import time

from chaos.common import (
    Row,
    ScenarioFailed,
    Scratch,
    apply_audit,
    audit,
    children_of,
    is_job_shell,
    wait_until,
)

RECOVERY_BOUND = 60.0  # a hang detector: the design's worst case is a lease plus a few seconds


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    jobs_n, kills_n = (200, 10) if quick else (1000, 50)
    row = Row("1 SIGKILL storm", backend, jobs=jobs_n, extra_bound=kills_n,
              recovery_bound=RECOVERY_BOUND)
    rng = random.Random()
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        # Three kills of one job would make it dead by design (max-crashes); with 50 random
        # kills that is unlikely but possible, and it is scenario 3's subject, not this one's.
        q.fast(("max-crashes", "20"))
        ids = q.enqueue([{"command": s.side.command("sleep 0.1")} for _ in range(jobs_n)])
        supervisors = [q.start_workers(2) for _ in range(3)]
        # Random moments: kill number i when the number of started runs passes a random
        # threshold, so kills land over the whole run whatever the machine's speed.
        thresholds = sorted(rng.sample(range(jobs_n // 20, jobs_n * 9 // 10), kills_n))
        kills: list[tuple[float, int | None]] = []  # (when, pid of the job's sh or None)
        for threshold in thresholds:
            wait_until(lambda t=threshold: len(s.side.executions()) >= t, 120 + jobs_n,
                       f"{threshold} runs started")
            time.sleep(rng.uniform(0, 0.15))
            live = wait_until(lambda: [p for w in supervisors for p in w.worker_pids()], 60,
                              "a live worker to kill")
            victim = rng.choice(live)
            job_sh = [c for c in children_of(victim) if is_job_shell(c)]
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills.append((time.time(), job_sh[0] if job_sh else None))
        row.faults = len(kills)

        def drained() -> bool:
            counts = q.counts()
            return all(counts.get(k, 0) == 0 for k in ("pending", "processing", "failed"))

        wait_until(drained, 120 + jobs_n, "every job to finish", interval=0.5)
        for workers in supervisors:
            code = workers.stop(60)
            if code != 0:
                row.problems.append(f"a supervisor exited {code} after a warm stop")
        row.leftovers = len(s.leftovers())
        result = audit(q, s.side, {job_id: "completed" for job_id in ids})
        apply_audit(row, result)
        row.recovery = _worst_recovery(kills, result.executions, q.recovered_at())
        integrity = q.integrity()
        if integrity != "ok":
            row.problems.append(f"integrity check: {integrity}")
        if q.counts().get("processing", 0):
            raise ScenarioFailed("jobs left processing")
    return row


def _worst_recovery(kills, executions, recovered_at) -> float | None:
    """From each kill that hit a running job to the moment the queue took that run back (its
    `crashed` record). Its next start is not the measure: a recovered job is due now, so it
    queues behind every job that was due before it, which is the queue's order, not a delay."""
    worst = None
    for when, pid in kills:
        # pids are reused over a thousand jobs: the victim is the last run of that pid that
        # had started by the kill
        runs = [e for e in executions if e.pid == pid and e.started <= when]
        victim = max(runs, key=lambda e: e.started) if runs else None
        at = recovered_at.get((victim.job, victim.run)) if victim else None
        if at is None:
            continue  # the kill came after the run's result was recorded
        took = at - when
        worst = took if worst is None else max(worst, took)
    return worst
