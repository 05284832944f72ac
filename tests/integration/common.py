"""Constants and small helpers shared by the integration tests."""

from __future__ import annotations

from queuectl import sql
from queuectl.store import WorkerIdentity, open_store

# The store takes `now` as an argument; tests pass times around this one (2033).
T0 = 2_000_000_000.0
A = WorkerIdentity(id="host-a:101:aaaa", host="host-a", pid=101)
B = WorkerIdentity(id="host-b:202:bbbb", host="host-b", pid=202)


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has finished running)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


def create_schema_version(store, version: int) -> None:
    """The schema as the queuectl whose SCHEMA_VERSION was `version` created it: migrations
    up to that one, in one transaction, for a test of the upgrade from it."""
    with store.db.transaction():
        for number, script in sql.migrations(store.db.dialect):
            if number <= version:
                store.db.run_script(script)
        store.db.execute("set_schema_version", {"version": str(version)})


def open_store_of_version(db: str, version: int):
    """A store on a new queue with the schema, and sending the statements, of the queuectl
    whose SCHEMA_VERSION was `version`: what that queuectl wrote, for a test of the upgrade
    from it (close it, then open the queue as today's queuectl does)."""
    made = open_store(db, migrate=False)
    create_schema_version(made, version)
    made.close()
    store = open_store(db, migrate=False)
    send_statements_of(store, version)
    return store


def send_statements_of(store, version: int) -> None:
    """Make `store` send the statements of the queuectl whose SCHEMA_VERSION was `version`,
    where today's need a later migration: before 11, PostgreSQL's counted on the shard
    `backend pid mod 16`, and queuectl_shard() did not exist."""
    if store.db.dialect == "postgres" and version < 11:
        store.db.queries = {name: query.replace("queuectl_shard()", "mod(pg_backend_pid(), 16)")
                            for name, query in store.db.queries.items()}
