"""Scenario 3, a poison job: a command that SIGKILLs its own worker. It must end dead after
max-crashes lost workers, with a reason that says so, while the other jobs keep flowing."""

from __future__ import annotations

import datetime

from chaos.common import Row, Scratch, apply_audit, audit, wait_until

MAX_CRASHES = 3
RECOVERY_BOUND = 60.0  # from the poison's first run to its death; a hang detector


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    others_n = 30 if quick else 100
    row = Row("3 poison job", backend, jobs=others_n + 1, recovery_bound=RECOVERY_BOUND)
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        q.fast(("max-crashes", str(MAX_CRASHES)))
        # $PPID of the job's shell is the worker process that runs it.
        [poison] = q.enqueue([{"id": "poison", "command": s.side.command("kill -9 $PPID")}])
        others = q.enqueue([{"command": s.side.command("sleep 0.3")} for _ in range(others_n)])
        workers = q.start_workers(2)
        job = wait_until(lambda: _dead(q, poison), 120, "the poison job to be dead",
                         interval=0.2)
        wait_until(lambda: q.counts().get("completed", 0) == others_n, 60 + others_n,
                   "the other jobs to complete", interval=0.2)
        if not workers.running():
            row.problems.append("the supervisor died with its workers")
        code = workers.stop(60)
        if code != 0:
            row.problems.append(f"the supervisor exited {code} after a warm stop")
        row.leftovers = len(s.leftovers())

        expected = {job_id: "completed" for job_id in others}
        expected[poison] = "dead"
        result = audit(q, s.side, expected)
        apply_audit(row, result)
        runs = sorted((e for e in result.executions if e.job == poison), key=lambda e: e.started)
        row.faults = len(runs)
        row.extra_bound = row.faults  # each lost worker may cost a re-run of its job
        if (job["crashes"], job["runs"], len(runs)) != (MAX_CRASHES,) * 3:
            row.problems.append(f"poison: crashes {job['crashes']}, runs {job['runs']}, "
                                f"{len(runs)} executions; expected {MAX_CRASHES} of each")
        reason = job["last_error"] or ""
        if "max-crashes" not in reason or "died" not in reason:
            row.problems.append(f"poison's reason does not say why: {reason!r}")
        died_at = job["history"][-1]["finished_at"]
        if runs:
            died = _epoch(died_at)
            row.recovery = died - runs[0].started
            flowed = [e for e in result.executions
                      if e.job != poison and e.ended and runs[0].started < e.started < died]
            row.notes.append(f"{len(flowed)} other job(s) ran while the poison was crashing "
                             f"workers; reason: {reason}")
            if not flowed:
                row.problems.append("no other job ran while the poison crashed workers")
    return row


def _dead(q, job_id: str) -> dict | None:
    job = q.json("show", job_id)
    return job if job["state"] == "dead" else None


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
