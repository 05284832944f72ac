"""Scenario 5, stops. Warm (one SIGTERM to the supervisor, one SIGINT to the whole group as a
terminal's Ctrl-C sends it, or one SIGTERM to the whole group as `pkill` and systemd send it):
the running jobs finish, nothing new starts after the signal,
exit 0. Cold (a second signal): the running jobs' process groups are killed and the jobs put
back without charging an attempt (outcome `released`), exit 1. Either way no process is left."""

from __future__ import annotations

import signal
import time

from chaos.common import (
    Row,
    Scratch,
    apply_audit,
    audit,
    processes_with_env,
    wait_until,
)

WORKERS = 2
JOB = "sleep 1"
STOP_BOUND = 10.0  # from the last signal to the supervisor's exit (a warm stop waits a job)
SENDERS = {
    "SIGTERM": lambda w: w.signal(signal.SIGTERM),
    "SIGINT to the group": lambda w: w.signal_group(signal.SIGINT),
    "SIGTERM to the group": lambda w: w.signal_group(signal.SIGTERM),
}


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    rounds = 5 if quick else 20
    row = Row("5 warm + cold stops", backend, recovery_bound=STOP_BOUND)
    ids: list[str] = []
    stop_times: list[float] = []
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        q.fast()
        for i in range(2 * rounds):
            cold = i % 2 == 1
            send = list(SENDERS.values())[(i // 2) % len(SENDERS)]
            if q.counts().get("pending", 0) < WORKERS + 2:
                ids += q.enqueue([{"command": s.side.command(JOB)} for _ in range(4)])
            began = time.time()
            workers = q.start_workers(WORKERS)
            running = wait_until(lambda b=began: _running_since(s, b), 60,
                                 f"round {i + 1}: {WORKERS} jobs to start")
            signalled = first_signal = time.time()
            send(workers)
            if cold:
                wait_until(lambda w=workers: "stopping:" in w.log(), 15,
                           f"round {i + 1}: the first signal to be acknowledged")
                signalled = time.time()
                send(workers)
            code = workers.wait(60)
            stop_times.append(time.time() - signalled)
            row.faults += 2 if cold else 1
            if code != (1 if cold else 0):
                row.problems.append(f"round {i + 1} ({'cold' if cold else 'warm'}): "
                                    f"exit {code}")
            executions = s.side.executions()
            late = [e for e in executions if e.started > first_signal and e.job not in
                    {r.job for r in running}]
            if late:
                row.problems.append(f"round {i + 1}: {len(late)} job(s) started after the "
                                    "stop signal")
            for r in running:
                if cold:
                    _check_released(q, s, r, row, i)
                elif not any(e.job == r.job and e.run == r.run and e.ended for e in executions):
                    row.problems.append(f"round {i + 1}: warm stop did not let {r.job} finish")
            row.leftovers += len(s.leftovers())
        # Whatever the stops left pending runs now.
        workers = q.start_workers(WORKERS, "--burst")
        code = workers.wait(120 + 2 * len(ids))
        if code != 0:
            row.problems.append(f"the final --burst worker exited {code}")
        row.jobs = len(ids)
        result = audit(q, s.side, {job_id: "completed" for job_id in ids})
        apply_audit(row, result)
        row.extra_bound = WORKERS * rounds  # each cold stop releases at most one job a worker
        row.recovery = max(stop_times)
    return row


def _running_since(s: Scratch, since: float) -> list:
    """The runs this round's workers started, once every worker runs one."""
    started = [e for e in s.side.executions() if e.started >= since and not e.ended]
    return started if len(started) >= WORKERS else []


def _check_released(q, s: Scratch, r, row: Row, i: int) -> None:
    left = processes_with_env(s.marker, QUEUECTL_JOB_ID=r.job, QUEUECTL_RUN=str(r.run))
    if left:
        row.problems.append(f"round {i + 1}: cold stop left {len(left)} process(es) of {r.job}")
    job = q.json("show", r.job)
    last = job["history"][-1] if job["history"] else {}
    if (job["state"], job["attempts"], last.get("outcome"), last.get("run")) != (
            "pending", 0, "released", r.run):
        row.problems.append(f"round {i + 1}: {r.job} after a cold stop: state {job['state']}, "
                            f"attempts {job['attempts']}, last run {last}")
