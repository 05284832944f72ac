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
