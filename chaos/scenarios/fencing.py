"""Scenario 2, fencing: a worker frozen (SIGSTOP) past its lease while a worker on another host
takes its job over and reruns it; then thawed (SIGCONT). Its late result must be rejected, and
if its stale run is still going it must kill that run's process group within one heartbeat.

The other worker runs in a UTS namespace of its own with another host name (`unshare --uts`,
root only): on the same host the recovering worker kills the stale run itself (DECISIONS §3),
and the frozen worker's own fencing would never be exercised. Rounds alternate: even rounds
the stale run finishes while its worker is frozen (a late result), odd rounds it is still
running at the thaw (a stale process group)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

from chaos.common import (
    Queue,
    Row,
    ScenarioFailed,
    Scratch,
    Workers,
    processes_with_env,
    wait_until,
)

HEARTBEAT = 0.5  # FAST_CONFIG's heartbeat-seconds
# "Within one heartbeat", plus what a loaded 2-core machine adds to waking a thawed process.
STALE_KILL_BOUND = HEARTBEAT + 0.5
OTHER_HOST = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "chaos-other-host"]


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    rounds = 5 if quick else 20
    row = Row("2 fencing", backend, jobs=rounds, extra_bound=rounds,
              recovery_bound=STALE_KILL_BOUND)
    prefix = OTHER_HOST if _can_unshare() else None
    if prefix is None:
        row.notes.append("unshare --uts unavailable: the other worker shares this host name, "
                         "so it kills the stale run itself")
    takeovers: list[float] = []
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        q.fast()
        frozen = q.start_workers(1)
        wait_until(lambda: len(q.json("status")["workers"]) == 1, 60, "worker A to register")
        stale_kills: list[float] = []
        for i in range(rounds):
            late_result = i % 2 == 0
            first_run = "sleep 1" if late_result else "sleep 600"
            body = f'if [ "$QUEUECTL_RUN" = 1 ]; then {first_run}; else sleep 0.1; fi'
            job_id = f"fence{i}"
            q.enqueue([{"id": job_id, "command": s.side.command(body)}])
            wait_until(lambda j=job_id: [e for e in s.side.executions() if e.job == j], 60,
                       f"{job_id} to start on worker A")
            time.sleep(0.2)  # let A record the job's process group first
            frozen_at = _freeze(q, frozen)
            other = q.start_workers(1, prefix=prefix)
            try:
                job = wait_until(lambda j=job_id: _completed(q, j), 60,
                                 f"{job_id} to be rerun by worker B", interval=0.2)
            finally:
                code = other.stop(60)
            if code != 0:
                row.problems.append(f"round {i}: worker B exited {code}")
            crashed = [h for h in job["history"] if h["outcome"] == "crashed"]
            if crashed:
                takeovers.append(_recovered_at(q, job_id) - frozen_at)
            thawed = time.monotonic()
            frozen.signal_group(signal.SIGCONT)
            if late_result:
                wait_until(lambda j=job_id: f"job {j} finished but was no longer ours"
                           in frozen.log(), 30, f"worker A to try and fail to record {job_id}")
            else:
                wait_until(lambda j=job_id: not processes_with_env(
                    s.marker, QUEUECTL_JOB_ID=j, QUEUECTL_RUN="1"), 30,
                    f"the stale run of {job_id} to be killed", interval=0.01)
                stale_kills.append(time.monotonic() - thawed)
            # The late result changed nothing: one crash (the takeover), then B's completion.
            job = q.json("show", job_id)
            outcomes = [h["outcome"] for h in job["history"]]
            if outcomes != ["crashed", "completed"] or job["state"] != "completed":
                row.lost += 1
                row.notes.append(f"{job_id}: state {job['state']}, history {outcomes}")
        row.faults = rounds
        row.recovery = max(stale_kills) if stale_kills else None
        if takeovers:
            row.notes.append(f"takeover by the other host after the freeze: worst "
                             f"{max(takeovers):.2f}s (lease 2 s)")
        code = frozen.stop(60)
        if code != 0:
            row.problems.append(f"worker A exited {code} after a warm stop")
        row.leftovers = len(s.leftovers())
        executions = s.side.executions()
        row.extra = len(executions) - rounds
        row.double_terminal = sum(
            1 for outcomes in q.history().values() if outcomes.count("completed") > 1)
        late = [e for e in executions if e.run == 1 and e.ended]
        row.notes.append(f"{len(late)} late result(s) and {len(stale_kills)} stale run(s) "
                         "rejected or killed")
    return row


def _can_unshare() -> bool:
    try:
        return subprocess.run([*OTHER_HOST, "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _completed(q: Queue, job_id: str) -> dict | None:
    job = q.json("show", job_id)
    return job if job["state"] == "completed" else None


def _recovered_at(q: Queue, job_id: str) -> float:
    return q.recovered_at()[(job_id, 1)] - time.time() + time.monotonic()


def _freeze(q: Queue, workers: Workers) -> float:
    """SIGSTOP the supervisor and worker, at a moment the worker holds no transaction: a
    process frozen inside one holds the database's write lock (SQLite) or row locks
    (PostgreSQL) and stops every other writer, which is the database's nature, not fencing's
    subject. Returns the monotonic time of the freeze."""
    for _ in range(50):
        workers.signal_group(signal.SIGSTOP)
        if not _holds_transaction(q):
            return time.monotonic()
        workers.signal_group(signal.SIGCONT)
        time.sleep(0.05)
    raise ScenarioFailed("worker A never seen outside a transaction")


def _holds_transaction(q: Queue) -> bool:
    if q.backend == "sqlite":
        conn = sqlite3.connect(q.db, timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    rows = q.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND pid <> pg_backend_pid() AND (state LIKE 'idle in transaction%' "
                   "OR state = 'active')")
    return rows[0][0] > 0
