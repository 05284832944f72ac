"""Real processes competing for one SQLite file: every job claimed exactly once, and no
"database is locked" ever reaches a worker or a CLI call."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conditions import wait_until
from queuectl.models import NewJob
from queuectl.store import open_store

CLAIMER = Path(__file__).with_name("race_claimer.py")


def queuectl(db: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "queuectl", "--db", db, *args]


def counts(db: str) -> dict[str, int]:
    store = open_store(db)
    try:
        return store.counts()
    finally:
        store.close()


@pytest.mark.timeout(180)
def test_every_job_is_claimed_exactly_once(sqlite_database, tmp_path):
    jobs, processes = 500, 6
    store = open_store(sqlite_database)
    store.enqueue([NewJob(id=f"job-{n:03d}", command="true") for n in range(jobs)], 0.0)
    store.close()

    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(CLAIMER), sqlite_database, str(start),
             str(tmp_path / f"report-{n}.json"), f"claimer-{n}"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(processes)
    ]
    try:
        start.touch()  # all claim from the same moment, as far as the OS lets them
        outputs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err

    reports = [json.loads((tmp_path / f"report-{n}.json").read_text())
               for n in range(processes)]
    assert [r["errors"] for r in reports] == [[]] * processes
    assert [r["refused"] for r in reports] == [[]] * processes
    claimed = Counter(job_id for r in reports for job_id in r["claimed"])
    assert sorted(claimed) == [f"job-{n:03d}" for n in range(jobs)]
    assert set(claimed.values()) == {1}, [k for k, v in claimed.items() if v > 1]
    assert sum(1 for r in reports if r["claimed"]) >= 2, "no race happened: one process did all"

    store = open_store(sqlite_database)
    try:
        assert store.counts()["completed"] == jobs
        assert {j.runs for j in store.list(limit=jobs)} == {1}
        assert sum(len(store.attempts(f"job-{n:03d}")) for n in range(jobs)) == jobs
    finally:
        store.close()


@pytest.mark.timeout(180)
def test_the_wal_stays_small_while_workers_take_turns_with_the_lock(sqlite_database, tmp_path):
    """Two workers that take turns with the write lock used to keep SQLite's own checkpoint
    from ever finishing before the next write: the WAL never started over, grew by every
    commit (80 to 90 MB for these jobs) and each commit paid a checkpoint (DECISIONS.md 27)."""
    jobs = 1500
    store = open_store(sqlite_database)
    store.enqueue([NewJob(id=f"job-{n:04d}", command="true") for n in range(jobs)], 0.0)
    store.close()

    start, wal = tmp_path / "go", Path(sqlite_database + "-wal")
    procs = [subprocess.Popen(
        [sys.executable, str(CLAIMER), sqlite_database, str(start),
         str(tmp_path / f"report-{n}.json"), f"claimer-{n}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(2)]
    largest = 0

    def finished() -> bool:
        nonlocal largest
        if wal.exists():
            largest = max(largest, wal.stat().st_size)
        return all(p.poll() is not None for p in procs)

    try:
        start.touch()
        wait_until(finished, 150, "both claimers to finish", interval=0.005)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert [p.returncode for p in procs] == [0, 0]
    assert counts(sqlite_database)["completed"] == jobs
    assert 0 < largest < 24 * 2**20, f"the WAL reached {largest / 2**20:.1f} MiB"


@pytest.mark.timeout(180)
def test_many_cli_enqueues_while_workers_claim(sqlite_database, tmp_path):
    log_path = tmp_path / "workers.log"
    with open(log_path, "w") as log:
        workers = subprocess.Popen(queuectl(sqlite_database, "worker", "start", "--count", "2"),
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        def live_workers():
            store = open_store(sqlite_database)
            try:
                return len(store.live_workers(0)) == 2
            finally:
                store.close()

        wait_until(live_workers, 30, "two workers to register")
        callers, per_call = 16, 5
        enqueues = [
            subprocess.Popen(
                queuectl(sqlite_database, "enqueue", json.dumps(
                    [{"id": f"c{n}-{k}", "command": "true"} for k in range(per_call)])),
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for n in range(callers)
        ]
        results = [(p, *p.communicate(timeout=120)) for p in enqueues]
        for p, out, err in results:
            assert (p.returncode, err) == (0, "")
            assert len(out.split()) == per_call
        total = callers * per_call
        wait_until(lambda: counts(sqlite_database)["completed"] == total, 90,
                   f"{total} jobs to complete")
        stop = subprocess.run(queuectl(sqlite_database, "worker", "stop", "--timeout", "30"),
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert workers.wait(timeout=30) == 0
    finally:
        if workers.poll() is None:
            workers.kill()
            workers.wait()
    log = log_path.read_text()
    assert "locked" not in log
    assert "database error" not in log
    assert counts(sqlite_database) == {"pending": 0, "processing": 0, "completed": total,
                                       "failed": 0, "dead": 0, "cancelled": 0}


@pytest.mark.timeout(120)
def test_first_use_by_many_cli_calls_at_once(tmp_path):
    """Nobody created the database yet: every call races to create the file, switch it to WAL
    and apply the schema. All must succeed."""
    db = str(tmp_path / "fresh" / "queue.db")
    callers = 8
    procs = [
        subprocess.Popen(queuectl(db, "enqueue", json.dumps({"id": f"j{n}", "command": "true"})),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(callers)
    ]
    results = [(p, *p.communicate(timeout=60)) for p in procs]
    for p, out, err in results:
        assert (p.returncode, err, out) == (0, "", f"j{procs.index(p)}\n")
    assert counts(db)["pending"] == callers
