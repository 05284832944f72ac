"""Scenario 4, kill everything: SIGKILL every queuectl process of the run (supervisors,
workers, guardians, enqueue calls in flight) at a random moment while enqueuers and workers
are busy, many times over. After each: the database opens clean, every enqueue that printed an
id is there, and every job left processing holds a lease the next workers recover. At the end
every job is terminal.

Job processes are deliberately not killed: with their guardians gone, killing what is left of
a lost run is the recovering worker's job (DECISIONS §3, step 5)."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from chaos.common import (
    Queue,
    Row,
    ScenarioFailed,
    Scratch,
    SideFile,
    apply_audit,
    audit,
    marked_processes,
    sigkill_all,
    wait_until,
)

WORKERS = (2, 2)  # two `worker start --count 2`
ENQUEUERS = 2
RECOVERY_BOUND = 15.0  # worker start-up plus a lease (2 s) plus a maintenance pass, with room
# The backlog left after the last kill (up to 20,000 jobs of `sleep 0.1`, 4 workers) takes
# minutes to drain, more on a slower machine: what must not happen is no progress at all.
STALL_BOUND = 60.0


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    runs_n = 10 if quick else 100
    row = Row("4 kill everything", backend, recovery_bound=RECOVERY_BOUND)
    rng = random.Random()
    acknowledged: list[str] = []
    refused: list[str] = []
    recoveries: list[float] = []
    with Scratch(backend, pg_admin) as s:
        q = s.queue
        # A job in flight at three kills is dead by design (max-crashes, scenario 3's subject);
        # here a kill is not the job's fault, so the limit is out of the way.
        q.fast(("max-crashes", "20"))
        left_processing: dict[str, int] = {}  # job id -> runs, at the last kill
        allowed: Counter[str] = Counter()  # job id -> re-runs its kills allow
        why: defaultdict[str, list[str]] = defaultdict(list)  # kills that allowed none
        for _ in range(runs_n):
            started = time.monotonic()
            supervisors = [q.start_workers(n) for n in WORKERS]
            stop = threading.Event()
            threads = [threading.Thread(target=_enqueuer, daemon=True,
                                        args=(q, s.side, stop, acknowledged, refused))
                       for _ in range(ENQUEUERS)]
            for thread in threads:
                thread.start()
            kill_at = started + rng.uniform(0.3, 2.5)
            # Until the kill moment, watch the new workers take back what the last kill left.
            # If that takes longer, the kill waits for it, then comes at a random moment after
            # it: killing right at the recovery would hit the recovered jobs, just reclaimed,
            # again and again, and measure the suite's timing instead of the queue.
            pending = dict(left_processing)
            while pending or time.monotonic() < kill_at:
                if pending and not _still_lost(q, pending):
                    recoveries.append(time.monotonic() - started)
                    kill_at = max(kill_at, time.monotonic() + rng.uniform(0.3, 2.5))
                    pending = {}
                elif pending and time.monotonic() - started > RECOVERY_BOUND:
                    row.problems.append(f"jobs left processing by a kill not recovered in "
                                        f"{RECOVERY_BOUND:g}s: {sorted(pending)[:5]}")
                    recoveries.append(time.monotonic() - started)
                    pending = {}
                time.sleep(0.05)
            stop.set()
            _kill_everything(s.marker)
            for thread in threads:
                thread.join(120)
            _kill_everything(s.marker)  # an enqueue started between the scan and the flag
            for workers in supervisors:
                workers.popen.wait(60)
            row.faults += 1

            integrity = q.integrity()
            if integrity != "ok":
                row.problems.append(f"after kill {row.faults}: integrity check: {integrity}")
            jobs = q.jobs()
            missing = [job_id for job_id in acknowledged if job_id not in jobs]
            if missing:
                row.problems.append(f"after kill {row.faults}: acknowledged ids missing: "
                                    f"{missing[:5]}")
            left_processing = {j: job["runs"] for j, job in jobs.items()
                               if job["state"] == "processing"}
            # Each job whose current run had started may run again, once: its worker was
            # killed while it ran, or after it ended but before its result was written down.
            # Not a job claimed ahead in a batch (DECISIONS §30, §31) that never started:
            # it is given back unrun; nor one whose result its worker held in its journal:
            # that result is recorded, the job not run again.
            started_runs = {(e.job, e.run) for e in s.side.executions()}
            held = _held_in_journals(q.db)
            for job_id, runs in left_processing.items():
                if (job_id, runs) in started_runs and job_id not in held:
                    allowed[job_id] += 1
                    row.extra_bound += 1
                else:
                    why[job_id].append(f"kill {row.faults}: run {runs} "
                                       + ("held in a journal" if job_id in held
                                          else "not started"))
            leaseless = [j for j in left_processing if not jobs[j]["lease_expires_at"]]
            if leaseless:
                row.problems.append(f"processing without a lease: {leaseless[:5]}")

        # After the last kill: workers again, until every job is terminal.
        started = time.monotonic()
        supervisors = [q.start_workers(n) for n in WORKERS]
        for workers, n in zip(supervisors, WORKERS, strict=True):
            workers.wait_ready(n)
        wait_until(lambda: not _still_lost(q, left_processing), RECOVERY_BOUND,
                   "the last kill's jobs to be recovered")
        recoveries.append(time.monotonic() - started)
        _wait_drained(q, STALL_BOUND)
        for workers in supervisors:
            code = workers.stop(60)
            if code != 0:
                row.problems.append(f"a supervisor exited {code} after a warm stop")
        row.leftovers = len(s.leftovers())
        row.jobs = len(acknowledged)
        result = audit(q, s.side, {job_id: "completed" for job_id in acknowledged})
        apply_audit(row, result)
        _explain_extra_runs(row, q, result.executions, allowed, why)
        row.recovery = max(recoveries) if recoveries else None
        if refused:
            row.problems.append(f"{len(refused)} enqueue(s) refused while not killed: "
                                f"{refused[0][:200]}")
    return row


def _enqueuer(q: Queue, side: SideFile, stop: threading.Event, acknowledged: list[str],
              refused: list[str]) -> None:
    """Enqueue one job per call, as a user's script would, until told to stop. An id counts
    as acknowledged only once the call exited 0 having printed it."""
    # Three jobs a call: more work in flight at each kill than one a call (on PostgreSQL a
    # CLI call costs a connection too), and still all or nothing.
    spec = json.dumps([{"command": side.command("sleep 0.1")}] * 3)
    while not stop.is_set():
        try:
            result = q.run("enqueue", spec, timeout=120)
        except subprocess.TimeoutExpired:
            refused.append("enqueue hung for 120 s")
            continue
        if result.returncode == 0:
            acknowledged.extend(result.stdout.split())  # list.extend is atomic under the GIL
        elif result.returncode != -9:
            refused.append(result.stderr.strip() or f"exit {result.returncode}")


def _kill_everything(marker: str) -> None:
    """SIGKILL every queuectl process of this run, again until a scan finds none: processes
    forked meanwhile (a supervisor restarting a worker, a worker's guardian) are caught too."""
    for _ in range(100):
        pids = [pid for pid, _ in marked_processes(marker, cmdline_has=" -m queuectl ")]
        if not pids:
            return
        sigkill_all(pids)
        time.sleep(0.01)


def _still_lost(q: Queue, at_kill: dict[str, int]) -> dict[str, int]:
    """The jobs of `at_kill` still processing in the run the kill interrupted."""
    if not at_kill:
        return {}
    rows = q.query("SELECT id, runs FROM jobs WHERE state = 'processing'")
    return {job_id: runs for job_id, runs in rows if at_kill.get(job_id) == runs}


def _wait_drained(q: Queue, stall: float) -> None:
    """Until every job is terminal; fail if none finishes for `stall` seconds. A fixed total
    (it was 600 s) failed on a slower machine only because the backlog was larger than that
    machine drains in 600 s, while the workers were busy all along."""
    last_done, progress_at = -1, time.monotonic()
    while True:
        counts = q.counts()
        if all(counts.get(k, 0) == 0 for k in ("pending", "processing", "failed")):
            return
        done = sum(counts.get(k, 0) for k in ("completed", "dead", "cancelled"))
        if done != last_done:
            last_done, progress_at = done, time.monotonic()
        elif time.monotonic() - progress_at > stall:
            raise ScenarioFailed(f"no job finished for {stall:g}s while draining: {counts}")
        time.sleep(0.5)


def _held_in_journals(db: str) -> set[str]:
    """Ids of the jobs whose results the killed workers held in their journals: a line with an
    exit status. Read as the files (journal.py) or the table (journal_table.py) are, not
    through queuectl: the suite checks what is stored. A journal is emptied at each commit, so
    such a line is the job's current run."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return {row[0] for row in conn.execute(
                "SELECT job_id FROM worker_journal WHERE exit_code IS NOT NULL")}
    folder = Path(db + "-journals")
    held: set[str] = set()
    if not folder.is_dir():
        return held
    for journal in folder.iterdir():
        for line in journal.read_text(errors="replace").splitlines():
            try:
                fields = json.loads(line)
            except ValueError:
                continue  # cut short by the kill: said nothing
            if "exit" in fields:
                held.add(fields["job"])
    return held


def _explain_extra_runs(row: Row, q: Queue, executions: list, allowed: Counter[str],
                        why: dict[str, list[str]]) -> None:
    """Name the jobs that ran again more often than their kills allowed, with what the side
    file, the history and each kill said of them: the row's count alone does not say which."""
    ran: Counter[str] = Counter(e.job for e in executions)
    over = [job_id for job_id, n in ran.items() if n - 1 > allowed[job_id]]
    if not over:
        return
    history = q.history()
    for job_id in over[:5]:
        runs = sorted((e.run, e.pid, "ended" if e.ended else "cut")
                      for e in executions if e.job == job_id)
        row.notes.append(f"ran again beyond its kills' allowance: {job_id}: side file {runs}, "
                         f"history {history.get(job_id)}, kills {why.get(job_id)}")
