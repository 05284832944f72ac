"""SQLite builds a temporary b-tree for `state IN (...)` with more than two constants each time
it tests a row being written (the CHECK, partial index conditions): migration 7 spells those
conditions as chains of `=` (DECISIONS.md §33). These tests hold that, and that a queue made
by an older queuectl is upgraded to the same schema with its jobs and guarantees intact."""

from __future__ import annotations

import re
import sqlite3

import pytest

from queuectl.models import NewJob
from queuectl.store import open_store
from queuectl.store.jobstore import SCHEMA_VERSION

from .common import create_schema_version

T0 = 1_700_000_000.0

# Statements that run once per job written: a temporary b-tree built in them is built per job.
PER_JOB_WRITES = ["insert_job", "insert_job_batch", "finish_job", "unclaim_job",
                  "cancel_waiting_job", "dlq_retry", "import_job"]
NEW_CHECK = "CHECK (state = 'pending' OR state = 'processing'"


def _ephemeral_tables(conn: sqlite3.Connection, query: str) -> int:
    params = dict.fromkeys(re.findall(r"(?<!:):(\w+)", query))
    return sum(op[1] == "OpenEphemeral" for op in conn.execute("EXPLAIN " + query, params))


@pytest.mark.parametrize("name", PER_JOB_WRITES)
def test_writing_a_job_builds_no_temporary_table(sqlite_database, name):
    store = open_store(sqlite_database)
    try:
        assert _ephemeral_tables(store.db.conn, store.db.queries[name]) == 0
    finally:
        store.close()


def test_the_old_state_lists_did_build_them(tmp_path):
    """The test above can fail: the schema as migration 6 left it builds temporary tables."""
    store = open_store(str(tmp_path / "v6.db"), migrate=False)
    try:
        create_schema_version(store, 6)
        assert _ephemeral_tables(store.db.conn, store.db.queries["finish_job"]) >= 3
    finally:
        store.close()


def _insert(conn: sqlite3.Connection, job_id: str, state: str, unique_key=None) -> None:
    conn.execute(
        "INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at, run_at, "
        "unique_key) VALUES (?, 'true', ?, 3, ?, ?, ?, ?)", (job_id, state, T0, T0, T0,
                                                             unique_key))


def test_a_version_6_queue_is_upgraded_with_its_jobs_and_rules(tmp_path):
    path = str(tmp_path / "v6.db")
    old = open_store(path, migrate=False)
    create_schema_version(old, 6)
    old.close()
    raw = sqlite3.connect(path, isolation_level=None)
    _insert(raw, "done", "completed")
    _insert(raw, "keyed", "pending", unique_key="k")
    raw.close()

    watcher = sqlite3.connect(path, isolation_level=None)  # its schema read before the upgrade
    watcher.execute("SELECT count(*) FROM jobs").fetchone()
    store = open_store(path)
    try:
        assert store.db.fetch_one("schema_version")["value"] == str(SCHEMA_VERSION)
        definition = store.db.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
        assert NEW_CHECK in definition and "state IN" not in definition
        assert store.db.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert {j.id for j in store.list()} == {"done", "keyed"}
        # The migrating connection and one opened before it both hold the new CHECK.
        for conn in (store.db.conn, watcher):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed: state ="):
                _insert(conn, "bad", "bogus")
            assert _ephemeral_tables(conn, store.db.queries["finish_job"]) == 0
        # jobs_unique_active, rebuilt, still holds one live job per key.
        again = store.enqueue([NewJob(id="", command="true", unique_key="k")], T0 + 1)
        assert again[0].duplicate and again[0].id == "keyed"
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            _insert(watcher, "twin", "failed", unique_key="k")
    finally:
        store.close()
        watcher.close()
