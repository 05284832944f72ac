"""PostgreSQL goes away while workers are busy: every connection is terminated, three times.

Nothing may be lost (every job runs and ends completed), nothing may be left processing, and
a job runs again only if it was in flight when a connection died (at-least-once).
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from tests.conftest import CLI

from .helpers import QueueCLI, wait_until

JOBS = 40
OUTAGES = 3
KILL_EVERY_CONNECTION = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def pg_queue(pg_database, tmp_path):
    queue = QueueCLI(CLI(pg_database, tmp_path), tmp_path)
    yield queue
    queue.cleanup()


def test_busy_workers_ride_out_terminated_connections(pg_queue, pg_database, tmp_path: Path):
    q = pg_queue
    q.fast()
    marker = tmp_path / "ran.txt"
    q.enqueue(*[{"id": f"j{n}", "command": f"sleep 0.3; echo j{n} >> {marker}"}
                for n in range(JOBS)])
    first, second = q.start_workers(2), q.start_workers(2)

    def ran() -> list[str]:
        return marker.read_text().split() if marker.exists() else []

    with psycopg.connect(pg_database, autocommit=True) as admin:
        for outage in range(OUTAGES):
            wait_until(lambda n=outage: len(ran()) >= (n + 1) * JOBS // (OUTAGES + 2), 60,
                       f"progress before outage {outage + 1}")
            killed = admin.execute(KILL_EVERY_CONNECTION).fetchall()
            assert killed, "there were worker connections to terminate"
            time.sleep(0.2)  # the outage: workers find their connections gone meanwhile

    def all_completed() -> bool:
        counts = q.counts()
        return counts["completed"] == JOBS and counts["processing"] == 0

    wait_until(all_completed, 90, "every job completed after the outages")
    runs = ran()
    assert sorted(set(runs)) == sorted(f"j{n}" for n in range(JOBS)), "a job was lost"
    # Only a job in flight at an outage may run twice: 4 workers, 3 outages.
    assert len(runs) - JOBS <= 4 * OUTAGES, runs
    assert first.running() and second.running(), "a supervisor died with its connections"
    logs = first.log() + second.log()
    assert "Traceback" not in logs, logs
    q.ok("worker", "stop")
    assert first.wait(30) == 0 and second.wait(30) == 0


def test_a_result_outlasting_its_lease_in_an_outage_still_lands_once(pg_queue, pg_database,
                                                                      tmp_path: Path):
    """The database is unreachable for longer than the lease while a job finishes. Results are
    fenced by the claim's token, so the worker keeps trying to record: once the database is
    back the result lands (nobody took the job over), and the job is not run a second time."""
    q = pg_queue
    q.fast()  # lease 2 s
    marker, started = tmp_path / "ran.txt", tmp_path / "started"
    q.enqueue({"id": "once", "command": f"touch {started}; sleep 0.5; echo ran >> {marker}"})
    workers = q.start_workers(1)
    wait_until(started.exists, 30, "the job to start")
    began = time.monotonic()
    database = psycopg.conninfo.conninfo_to_dict(pg_database)["dbname"]
    with psycopg.connect(pg_database, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (database,))
            wait_until(marker.exists, 30, "the job to finish during the outage")
            # The outage's chosen length: past the 2 s lease, which the worker last renewed
            # when the job started.
            time.sleep(max(0.0, began + 3.5 - time.monotonic()))
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    job = q.wait_for_state("once", "completed", 30)
    assert job["runs"] == 1 and job["attempts"] == 1, job
    assert marker.read_text().split() == ["ran"], "the job ran again after the outage"
    assert "still trying" in workers.log()
