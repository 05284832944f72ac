"""turns.py: a SQLite worker's transaction holds a flock on the queue's journals folder, which
wakes the next worker when it ends. It must end with the transaction however that ends, and
with the process that held it, whatever its children do (DECISIONS.md §33)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from tests.conditions import wait_until

from queuectl.store import open_store


def _turn_is_free(queue_file: str) -> bool:
    """Whether another process could take the turn now: a descriptor of our own is another
    open file description, which contends like another process's."""
    fd = os.open(os.path.realpath(queue_file) + "-journals", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases it if we got it
    return True


def test_a_worker_transaction_holds_the_turn_until_it_commits(sqlite_database):
    store = open_store(sqlite_database, durable=False)
    try:
        with store.db.transaction():
            assert _turn_is_free(sqlite_database)  # nothing sent yet: BEGIN waits for SQL
            store.db.execute("config_set", {"key": "max-retries", "value": "4"})
            assert not _turn_is_free(sqlite_database)
        assert _turn_is_free(sqlite_database)
    finally:
        store.close()


def test_a_failed_transaction_gives_the_turn_back(sqlite_database):
    store = open_store(sqlite_database, durable=False)
    try:
        with pytest.raises(RuntimeError), store.db.transaction():
            store.db.execute("config_set", {"key": "max-retries", "value": "4"})
            raise RuntimeError("boom")
        assert _turn_is_free(sqlite_database)
        with store.db.transaction():  # and the connection goes on
            store.db.execute("config_set", {"key": "max-retries", "value": "5"})
        assert store.settings()["max-retries"] == 5
    finally:
        store.close()


def test_the_cli_takes_no_turn_and_its_descriptor_is_closed_on_exec(sqlite_database):
    cli = open_store(sqlite_database)  # durable: the CLI's connection
    worker = open_store(sqlite_database, durable=False)
    try:
        with cli.db.transaction():
            cli.db.execute("config_set", {"key": "max-retries", "value": "4"})
            assert _turn_is_free(sqlite_database)
        turns = worker.db._turns
        assert turns is not None
        assert fcntl.fcntl(turns._descriptor(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        cli.close()
        worker.close()


HOLDER = textwrap.dedent("""
    import os, sys, time
    from queuectl.store import open_store
    store = open_store(sys.argv[1], durable=False)
    store.db.fetch_one("schema_version")  # a forked child of a process that already wrote
    child = os.fork()
    if child == 0:  # forked, never execs: keeps every inherited descriptor it was not told of
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    with store.db.transaction():
        store.db.execute("config_set", {"key": "max-retries", "value": "4"})
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_holder_killed_mid_transaction_frees_the_turn_though_its_child_lives(
        sqlite_database):
    open_store(sqlite_database).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, sqlite_database],
                              stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(sqlite_database))  # not the repo's shim
    child = None
    try:
        child = int(holder.stdout.readline())
        assert holder.stdout.readline() == "held\n"
        assert not _turn_is_free(sqlite_database)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        os.kill(child, 0)  # still alive
        wait_until(lambda: _turn_is_free(sqlite_database), timeout=5,
                   what="the turn freed after its holder died")
        # And a worker of the queue writes at once.
        store = open_store(sqlite_database, durable=False)
        try:
            with store.db.transaction():
                store.db.execute("config_set", {"key": "max-retries", "value": "6"})
            assert store.settings()["max-retries"] == 6
        finally:
            store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
