"""Opening a queue: from `--db` / QUEUECTL_DB / the per-user default to a migrated JobStore."""

from __future__ import annotations

import os

from queuectl.errors import InputError
from queuectl.store.jobstore import Enqueued, JobStore, WorkerIdentity

__all__ = ["Enqueued", "JobStore", "WorkerIdentity", "open_store", "resolve_target",
           "default_db_path", "is_postgres"]

ENV_VAR = "QUEUECTL_DB"


def default_db_path() -> str:
    """One queue per user, whatever the current directory, so `enqueue` here and
    `worker start` there meet: $XDG_DATA_HOME/queuectl/queue.db (~/.local/share/...)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "queuectl", "queue.db")


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def resolve_target(db: str | None) -> str:
    target = db or os.environ.get(ENV_VAR) or default_db_path()
    if not target.strip():
        raise InputError("--db is empty; give a file path or a postgresql:// URL")
    if is_postgres(target):
        return target
    if target.startswith("sqlite:///"):
        target = target.removeprefix("sqlite://")
    elif "://" in target:
        raise InputError(
            f"unsupported database URL {target!r}; use a file path or postgresql://..."
        )
    return os.path.abspath(os.path.expanduser(target))


def open_store(db: str | None = None, *, durable: bool = True, migrate: bool = True) -> JobStore:
    target = resolve_target(db)
    if is_postgres(target):
        from queuectl.store.postgres import PostgresConnector  # optional extra, imported late

        connector = PostgresConnector(target)
    else:
        from queuectl.store.sqlite import SQLiteConnector

        connector = SQLiteConnector(target, durable=durable)
    store = JobStore(connector)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


def queue_exists(target: str) -> bool:
    """Whether a queue was created at `target` (a resolved target), without creating one."""
    if not is_postgres(target):
        return os.path.exists(target)
    store = open_store(target, migrate=False)  # connecting to PostgreSQL creates nothing
    try:
        return store._schema_version() is not None
    finally:
        store.close()
