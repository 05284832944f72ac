"""Scenario 8, pauses: Ctrl-Z and `fg` on a busy pool while another pool serves the same queue.

Pool A runs in a process group of its own within this session, as a shell with job control
starts it, so SIGTSTP to its group is what a terminal's Ctrl-Z sends and SIGCONT what `fg`
sends; pool B works beside it. Each pause comes while A runs a job and lasts longer than a
lease. A's running jobs must keep their leases and finish (B must not take them over and run
them again: no extra run at all), A must start no job while paused, and every job completes.
Before Ctrl-Z was a pause, the stopped workers' jobs were taken over by B after a lease."""

from __future__ import annotations

import random
import signal
import time

from chaos.common import (
    Row,
    Scratch,
    apply_audit,
    audit,
    children_of,
    is_job_shell,
    process_state,
    wait_until,
)

WORKERS = 2
PAUSE_SECONDS = (2.5, 4.0)  # longer than the fast lease (2 s): a stopped worker loses its job
RESUME_BOUND = 5.0  # from SIGCONT to the supervisor saying it resumed
CLAIMED_BEFORE_MARGIN = 0.5  # a claim this soon after the signal may predate the pause


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    pauses_n, jobs_n = (3, 40) if quick else (12, 160)
    row = Row("8 pauses (Ctrl-Z)", backend, jobs=jobs_n, extra_bound=0,
              recovery_bound=RESUME_BOUND)
    rng = random.Random()
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        q.fast()
        ids = q.enqueue([{"command": s.side.command(f"sleep {rng.choice(('0.3', '1', '3'))}")}
                         for _ in range(jobs_n)])
        paused = q.start_workers(WORKERS, job_control=True)
        paused.wait_ready(WORKERS)
        pool_a = set(paused.worker_pids())
        other = q.start_workers(WORKERS)
        windows: list[tuple[float, float]] = []
        resume_times: list[float] = []
        for i in range(pauses_n):
            wait_until(lambda: _runs_a_job(pool_a), 60 + jobs_n, f"pause {i + 1}: A to run a job")
            paused.signal_group(signal.SIGTSTP)
            began = time.time()
            wait_until(lambda: process_state(paused.pid) == "T", 5,
                       f"pause {i + 1}: A's supervisor to stop")
            if any(process_state(pid) == "T" for pid in pool_a):
                row.problems.append(f"pause {i + 1}: a worker of A stopped too")
            time.sleep(rng.uniform(*PAUSE_SECONDS))  # the fault's length, not a wait
            ended = time.time()
            paused.signal_group(signal.SIGCONT)
            wait_until(lambda n=i + 1: paused.log().count("] resumed") >= n, RESUME_BOUND * 4,
                       f"pause {i + 1}: A to resume")
            resume_times.append(time.time() - ended)
            windows.append((began, ended))
            row.faults += 1

        def drained() -> bool:
            counts = q.counts()
            return all(counts.get(k, 0) == 0 for k in ("pending", "processing", "failed"))

        wait_until(drained, 120 + 4 * jobs_n, "every job to finish", interval=0.5)
        for workers in (paused, other):
            if workers.stop(60) != 0:
                row.problems.append(f"a supervisor exited non-zero after a warm stop: "
                                    f"{workers.log()[-500:]}")
        row.leftovers = len(s.leftovers())
        result = audit(q, s.side, {job_id: "completed" for job_id in ids})
        apply_audit(row, result)
        row.recovery = max(resume_times) if resume_times else None
        for job_id, run_no, worker, started in q.query(
                "SELECT job_id, run, worker_id, started_at FROM attempts"):
            pid = int(worker.split(":")[-2]) if worker and worker.count(":") >= 2 else None
            if pid in pool_a and any(b + CLAIMED_BEFORE_MARGIN < started < e for b, e in windows):
                row.problems.append(f"{job_id} (run {run_no}) started on A while it was paused")
    return row


def _runs_a_job(workers: set[int]) -> bool:
    return any(is_job_shell(child) for pid in workers for child in children_of(pid))
