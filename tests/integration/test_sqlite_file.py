"""What only the SQLite backend has: durability pragmas, file permissions, the claim's query
plan, and refusing files that are not queue databases."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from queuectl import cli
from queuectl.errors import QueueError
from queuectl.models import NewJob
from queuectl.store import open_store
from queuectl.store.sqlite import SQLiteConnector

FULL, NORMAL = 2, 1


@pytest.fixture
def opened_connections(monkeypatch):
    """Every SQLiteConnector closed during the test, with its pragmas as they were at close."""
    seen = []
    real_close = SQLiteConnector.close

    def close(self):
        seen.append({
            "synchronous": self.conn.execute("PRAGMA synchronous").fetchone()[0],
            "journal_mode": self.conn.execute("PRAGMA journal_mode").fetchone()[0],
        })
        real_close(self)

    monkeypatch.setattr(SQLiteConnector, "close", close)
    return seen


def test_cli_commands_commit_with_synchronous_full_in_wal_mode(sqlite_database,
                                                               opened_connections, capsys):
    assert cli.main(["--db", sqlite_database, "enqueue", '{"id": "a", "command": "true"}']) == 0
    assert cli.main(["--db", sqlite_database, "config", "set", "max-retries", "4"]) == 0
    assert cli.main(["--db", sqlite_database, "dlq", "purge"]) == 0
    capsys.readouterr()
    assert opened_connections == [{"synchronous": FULL, "journal_mode": "wal"}] * 3


def test_the_wal_mode_is_stored_in_the_file(sqlite_database, capsys):
    assert cli.main(["--db", sqlite_database, "enqueue", '{"command": "true"}']) == 0
    raw = sqlite3.connect(sqlite_database)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_workers_use_synchronous_normal(sqlite_database):
    store = open_store(sqlite_database, durable=False)
    try:
        assert store.db.conn.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
    finally:
        store.close()


def test_workers_checkpoint_the_wal_themselves_and_the_cli_leaves_it_to_sqlite(sqlite_database):
    worker = open_store(sqlite_database, durable=False)
    cli_side = open_store(sqlite_database)
    try:
        assert worker.db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert cli_side.db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        worker.close()
        cli_side.close()


def test_a_worker_connection_checkpoints_every_so_many_commits(sqlite_database):
    from queuectl.store.sqlite import CHECKPOINT_EVERY_COMMITS

    store = open_store(sqlite_database, durable=False)
    wal = sqlite_database + "-wal"
    try:
        def one_commit(n: int) -> None:
            store.enqueue([NewJob(id=f"job-{n}", command="true")], 0.0)

        sizes = []
        for n in range(CHECKPOINT_EVERY_COMMITS * 5):
            one_commit(n)
            sizes.append(os.path.getsize(wal))
        # After each checkpoint the WAL starts over from its first page, so the file grows
        # little after the first; with no checkpoint at all it would grow on every commit,
        # to five times the size.
        assert max(sizes) < 1.5 * sizes[CHECKPOINT_EVERY_COMMITS - 1]
    finally:
        store.close()


def test_a_big_wal_is_cut_back_once_the_workers_start_it_over(sqlite_database, monkeypatch):
    """A bulk enqueue leaves a WAL as large as the batch; while workers keep the queue open,
    it is never deleted, so it is cut back when it starts over after a checkpoint."""
    from queuectl.store import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "WAL_SIZE_LIMIT", 1 << 20)
    open_store(sqlite_database).close()
    worker = open_store(sqlite_database, durable=False)
    cli_side = open_store(sqlite_database)
    wal = sqlite_database + "-wal"
    try:
        cli_side.enqueue([NewJob(id=f"bulk-{n}", command="true") for n in range(20_000)], 0.0)
        assert os.path.getsize(wal) > 2 << 20  # so the test means something
        # The worker's 100th commit checkpoints; its next starts the WAL over and cuts it.
        for n in range(sqlite_module.CHECKPOINT_EVERY_COMMITS + 5):
            worker.enqueue([NewJob(id=f"one-{n}", command="true")], 0.0)
        assert os.path.getsize(wal) <= 1 << 20
    finally:
        worker.close()
        cli_side.close()


def _umask_zero():
    os.umask(0)


def test_default_database_is_private_even_with_a_permissive_umask(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "QUEUECTL_DB"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", "enqueue", '{"command": "true"}'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        preexec_fn=_umask_zero,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "xdg" / "queuectl"
    db = folder / "queue.db"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_wal_and_shm_files_are_private_too(tmp_path):
    old = os.umask(0)
    try:
        store = open_store(str(tmp_path / "q.db"))
    finally:
        os.umask(old)
    try:
        store.config_set("max-retries", "2")  # a write: the -wal and -shm files exist now
        for suffix in ("-wal", "-shm"):
            path = tmp_path / f"q.db{suffix}"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, suffix
    finally:
        store.close()


def test_the_claim_walks_the_ready_index(sqlite_database):
    """The claim must stop at the first due job in index order, not sort every pending job:
    with 50k pending jobs a sorting plan costs ~12 ms per claim instead of ~0.3 ms."""
    store = open_store(sqlite_database)
    try:
        params = {"worker_id": "w", "host": "h", "token": "t", "lease_until": 1.0, "now": 0.0}
        plan = [row[3] for row in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + store.db.queries["claim_any"], params)]
    finally:
        store.close()
    assert any("jobs_ready" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_a_queue_filtered_claim_seeks_each_queue_on_its_index(sqlite_database):
    """With queues, each served queue is sought on jobs_ready_by_queue; the only sort is of the
    one best candidate per queue, so ready jobs of other queues are never stepped over."""
    store = open_store(sqlite_database)
    try:
        params = {"worker_id": "w", "host": "h", "token": "t", "lease_until": 1.0, "now": 0.0,
                  "queues": '["a", "b"]'}
        plan = [row[3] for row in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + store.db.queries["claim_in_queues"], params)]
    finally:
        store.close()
    assert any("jobs_ready_by_queue (queue=?)" in step for step in plan), plan
    assert not any("SCAN jobs" in step for step in plan), plan


def test_recent_history_is_read_by_finish_time_on_its_index(sqlite_database):
    """status, stats, /metrics and the dashboard read the last minutes of history: with a
    million runs recorded, a scan of the attempts table would cost every one of them."""
    store = open_store(sqlite_database)
    try:
        plan = [row[3] for row in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + store.db.queries["attempt_history"],
            {"since": 0.0, "limit": 10})]
    finally:
        store.close()
    assert any("attempts_finished" in step for step in plan), plan
    assert not any(step.startswith("SCAN a") for step in plan), plan


def test_a_database_of_another_application_is_refused(tmp_path, capsys):
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE invoices (id INTEGER)")
    raw.commit()
    raw.close()
    assert cli.main(["--db", str(path), "status"]) == 1
    assert "is not a queuectl database" in capsys.readouterr().err
    raw = sqlite3.connect(path)
    try:  # and nothing was added to it
        tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        raw.close()
    assert tables == ["invoices"]


def test_a_file_that_is_not_sqlite_is_refused(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes, not a database\n" * 100)
    assert cli.main(["--db", str(path), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("queuectl: error: ")
    assert "Traceback" not in err
    assert path.read_text().startswith("just some notes")


def test_a_newer_schema_is_refused(sqlite_database):
    open_store(sqlite_database).close()
    raw = sqlite3.connect(sqlite_database)
    raw.execute("UPDATE queuectl_meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(QueueError, match="schema version 99, newer than"):
        open_store(sqlite_database)


def _can_take_write_lock(path: str) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()  # ends the transaction it may have begun: it wrote nothing
    return True


def test_a_transaction_takes_the_write_lock_with_its_first_statement(sqlite_database):
    """BEGIN IMMEDIATE goes with the first statement (DECISIONS.md 24): Python before it does
    not hold the one write lock that every other writer waits on; from it on, the lock is ours
    until COMMIT."""
    store = open_store(sqlite_database)
    try:
        with store.db.transaction():
            assert _can_take_write_lock(sqlite_database)
            store.db.execute("config_set", {"key": "max-retries", "value": "7"})
            assert not _can_take_write_lock(sqlite_database)
            with store.db.transaction():  # nested: part of the outer one
                store.db.execute("config_set", {"key": "lease-seconds", "value": "90"})
            assert not _can_take_write_lock(sqlite_database)
        assert _can_take_write_lock(sqlite_database)
        assert store.settings()["max-retries"] == 7
        assert store.settings()["lease-seconds"] == 90
    finally:
        store.close()


def test_a_failed_transaction_writes_nothing_and_leaves_the_connection_usable(sqlite_database):
    store = open_store(sqlite_database)
    try:
        with pytest.raises(RuntimeError), store.db.transaction():
            raise RuntimeError("before any statement: nothing to roll back")
        with pytest.raises(RuntimeError), store.db.transaction():
            store.db.execute("config_set", {"key": "max-retries", "value": "7"})
            raise RuntimeError("after one")
        assert not store.db.conn.in_transaction
        assert _can_take_write_lock(sqlite_database)
        assert store.settings()["max-retries"] != 7
        store.config_set("max-retries", "5")  # the next transaction begins as usual
        assert store.settings()["max-retries"] == 5
    finally:
        store.close()


def test_statements_queued_before_a_transaction_s_first_take_no_lock_until_it(
        sqlite_database):
    """Connector.queue on SQLite (DECISIONS.md 32): held back with the BEGIN until the
    transaction's next statement, so the Python between them runs without the write lock."""
    store, other = open_store(sqlite_database), open_store(sqlite_database)
    store.config_set("max-retries", "3")
    with store.db.transaction():
        sent = store.db.queue("config_set", {"key": "max-retries", "value": "7"})
        other.config_set("backoff-base", "3")  # the write lock is free: no BEGIN was sent
        assert sent.rowcount == -1
        # The next statement, a read too, sends the BEGIN and what was held first: it sees it.
        assert store.settings()["max-retries"] == 7
        assert sent.rowcount == 1
        store.db.execute("config_set", {"key": "lease-seconds", "value": "20"})
        assert other.settings()["max-retries"] == 3  # not committed yet
    assert (other.settings()["max-retries"], other.settings()["lease-seconds"]) == (7, 20)

    with store.db.transaction():  # held statements alone: sent with the COMMIT
        sent = store.db.queue("config_set", {"key": "max-retries", "value": "8"})
    assert (sent.rowcount, other.settings()["max-retries"]) == (1, 8)
    store.close()
    other.close()


def test_queued_statements_are_dropped_by_an_error_and_roll_back_when_they_fail(
        sqlite_database):
    store, other = open_store(sqlite_database), open_store(sqlite_database)
    store.config_set("max-retries", "3")
    with pytest.raises(RuntimeError):
        with store.db.transaction():
            store.db.queue("config_set", {"key": "max-retries", "value": "9"})
            raise RuntimeError("the caller failed before anything was sent")
    assert not store.db.conn.in_transaction
    with pytest.raises(QueueError, match="database error"):
        with store.db.transaction():
            store.db.queue("config_set", {"key": "max-retries", "value": "9"})
            store.db.queue("claim_in_queues", {"worker_id": "w", "host": "h", "token": "t",
                                               "lease_until": 1.0, "now": 0.0,
                                               "queues": "not json"})
    assert not store.db.conn.in_transaction
    assert other.settings()["max-retries"] == 3
    with store.db.transaction():  # nothing of either is left behind to be sent later
        store.db.execute("config_set", {"key": "backoff-base", "value": "4"})
    assert (other.settings()["max-retries"], other.settings()["backoff-base"]) == (3, 4)
    store.close()
    other.close()
