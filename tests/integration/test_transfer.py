"""`queuectl migrate`: a whole queue copied SQLite -> PostgreSQL -> SQLite, unchanged, and the
cases where it must refuse and write nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from queuectl.capture import OutputCapture
from queuectl.config import Settings
from queuectl.models import NewJob
from queuectl.store import WorkerIdentity, open_store

T0 = 1_800_000_000 + 1 / 3  # no short decimal form: the copy must keep every bit


def queuectl(*args: str) -> subprocess.CompletedProcess:
    # -P: the package from PYTHONPATH, not the checkout's queuectl.py shim in the cwd.
    return subprocess.run([sys.executable, "-P", "-m", "queuectl", *args], capture_output=True,
                          text=True, timeout=60)


def fill(db: str) -> None:
    """A queue that has lived: every state, every optional field, history and config."""
    store = open_store(db)
    store.config_set("backoff-base", "3")
    store.config_set("max-retries", "2")
    store.enqueue([
        NewJob(id="done", command="echo ok", priority=1, queue="mail", timeout=2.5,
               cwd="/srv", env={"A": "1", "B": "two words"}, unique_key="k1"),
        NewJob(id="doomed", command="exit 3", max_retries=0),
        NewJob(id="flaky", command="exit 1", max_retries=5),
        NewJob(id="crashed-worker", command="sleep 100"),
        NewJob(id="later", command="true", run_at=T0 + 3600),
        NewJob(id="plain", command="true", unique_key="k2"),
    ], T0)
    worker = WorkerIdentity(id="w1", host="host-a", pid=11)
    settings = store.settings()
    for expected in ("done", "doomed", "flaky", "crashed-worker"):
        job = store.claim(worker, T0 + 1, 30)
        assert job.id == expected
        if expected == "done":
            output = OutputCapture(64)  # small: head, cut, tail -> two stored chunks
            output.feed(b"binary \x00\xff and more than sixty-four bytes of output " * 3)
            store.complete(job, T0 + 2.125, output=output)
        elif expected in ("doomed", "flaky"):
            store.fail(job, T0 + 2, settings, 3, "boom")
        else:
            store.set_process(job, 4321, "boot:99")  # its worker vanished: left processing
    # A run whose history was purged since: the run counters still count it, and so must the
    # copy's (a Prometheus counter that drops reads as a reset).
    store.enqueue([NewJob(id="purged", command="true", priority=9)], T0)
    job = store.claim(worker, T0 + 1, 30)
    assert job.id == "purged"
    store.complete(job, T0 + 1.5)
    assert store.purge(["completed"], before=T0 + 2) == 1
    store.close()


def snapshot(db: str) -> dict:
    store = open_store(db)
    try:
        return {
            "jobs": store.db.fetch_all("export_jobs", {"after": 0, "limit": 10**6}),
            "attempts": store.db.fetch_all("export_attempts",
                                           {"job_id": "", "run": -1, "limit": 10**6}),
            "config": store.db.fetch_all("config_all"),
            "counts": store.counts_by_queue(),  # the import counts what it inserts
            "run_counters": sorted(store.attempt_totals(),
                                   key=lambda r: (r["queue"], r["outcome"])),
            "run_minutes": store.finished_by_minute(0),
            "output": [{**r, "data": bytes(r["data"])} for r in store.db.fetch_all(
                "export_output", {"job_id": "", "run": -1, "start_byte": -1, "limit": 10**6})],
        }
    finally:
        store.close()


def test_a_queue_goes_to_postgres_and_back_unchanged(tmp_path, pg_database):
    source, back = str(tmp_path / "source.db"), str(tmp_path / "back.db")
    fill(source)
    original = snapshot(source)
    assert len(original["jobs"]) == 6 and len(original["attempts"]) == 3
    assert len(original["output"]) == 2
    assert original["run_counters"] == [
        {"queue": "default", "outcome": "completed", "n": 1},  # purged from the history
        {"queue": "default", "outcome": "failed", "n": 2},
        {"queue": "mail", "outcome": "completed", "n": 1}]

    there = queuectl("migrate", "--from", source, "--to", pg_database, "--json")
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout) == {"jobs": 6, "attempts": 3, "config": 2,
                                        "output_chunks": 2, "running": 1}
    assert snapshot(pg_database) == original

    home = queuectl("migrate", "--from", pg_database, "--to", back)
    assert home.returncode == 0, home.stderr
    assert "copied 6 job(s), 3 attempt(s) and 2 config value(s)" in home.stderr
    assert "1 job(s) were running on the source" in home.stderr
    assert snapshot(back) == original
    assert snapshot(source) == original  # the source is only read


@pytest.mark.parametrize("direction", ["to-postgres", "to-sqlite"])
def test_the_copy_is_a_working_queue_that_keeps_its_order(tmp_path, pg_database, direction):
    source, target = str(tmp_path / "source.db"), pg_database
    if direction == "to-sqlite":
        source, target = pg_database, str(tmp_path / "target.db")
    store = open_store(source)
    store.enqueue([NewJob(id=f"j{i}", command="true") for i in range(1200)], T0)  # > a batch
    store.close()
    assert queuectl("migrate", "--from", source, "--to", target).returncode == 0

    copy = open_store(target)
    [new] = copy.enqueue([NewJob(id="new", command="true")], T0 + 1)
    rows = copy.db.fetch_all("export_jobs", {"after": 0, "limit": 10**6})
    assert rows[-1]["id"] == "new" and rows[-1]["seq"] == rows[-2]["seq"] + 1
    worker = WorkerIdentity(id="w", host="h", pid=1)
    claimed = [copy.claim(worker, T0 + 2, 30).id for _ in range(3)]
    assert claimed == ["j0", "j1", "j2"]  # FIFO as on the source
    copy.close()


def test_a_target_that_holds_jobs_is_refused_and_left_alone(tmp_path, pg_database):
    source = str(tmp_path / "source.db")
    fill(source)
    target = open_store(pg_database)
    target.enqueue([NewJob(id="mine", command="true")], T0)
    target.config_set("backoff-base", "5")
    target.close()
    before = snapshot(pg_database)

    result = queuectl("migrate", "--from", source, "--to", pg_database)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "already holds jobs" in result.stderr
    assert snapshot(pg_database) == before


def test_a_source_with_running_workers_is_refused(tmp_path, pg_database):
    source = str(tmp_path / "source.db")
    fill(source)
    store = open_store(source)
    store.register_worker(WorkerIdentity(id="w9", host="h", pid=1), 4e9)  # alive "now"
    store.close()
    result = queuectl("migrate", "--from", source, "--to", pg_database)
    assert result.returncode == 2 and "worker(s) are running" in result.stderr
    assert snapshot(pg_database)["jobs"] == []


@pytest.mark.parametrize("case", ["missing source", "same database", "not a queue"])
def test_bad_arguments_are_refused(tmp_path, case):
    target = str(tmp_path / "target.db")
    source = str(tmp_path / "missing.db")
    if case == "same database":
        open_store(target).close()
        source = target
    elif case == "not a queue":
        import sqlite3

        source = str(tmp_path / "other.db")
        sqlite3.connect(source).execute("CREATE TABLE t (x)").connection.close()
    result = queuectl("migrate", "--from", source, "--to", target)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("queuectl: error: ") and result.stderr.count("\n") == 1


def test_a_column_the_import_cannot_write_stops_the_copy(tmp_path, pg_database):
    # A later migration that adds a column but forgets import_job must fail loudly, not drop
    # the column's values on the floor.
    source = str(tmp_path / "source.db")
    fill(source)
    store = open_store(source)
    store.db.run_script("ALTER TABLE jobs ADD COLUMN invented TEXT")
    store.close()
    result = queuectl("migrate", "--from", source, "--to", pg_database)
    assert result.returncode == 1 and "cannot copy column(s) invented" in result.stderr
    assert snapshot(pg_database)["jobs"] == []


def test_settings_survive_the_copy(tmp_path, pg_database):
    source = str(tmp_path / "source.db")
    fill(source)
    assert queuectl("migrate", "--from", source, "--to", pg_database).returncode == 0
    store = open_store(pg_database)
    settings: Settings = store.settings()
    assert (settings["backoff-base"], settings["max-retries"]) == (3.0, 2)
    store.close()
