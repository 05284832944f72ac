"""Opening a queue: from `--db` / QUEUECTL_DB / the per-user default to a migrated JobStore."""

from __future__ import annotations

import os

from queuectl.errors import InputError
from queuectl.store.jobstore import Enqueued, JobStore, WorkerIdentity

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from queuectl.store.connector import Connector

__all__ = ["Enqueued", "JobStore", "WorkerIdentity", "open_store", "resolve_target",
           "default_db_path", "is_postgres", "mask_password"]

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


def mask_password(url: str) -> str:
    """The URL as it may be shown: a password in it (user:secret@ or ?password=) becomes ***."""
    if "://" not in url:  # a file path: nothing to hide, and no URL parser to import
        return url
    import re  # here, not at the top: only PostgreSQL URLs need it, and start-up counts
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def strip_password(target: str) -> str:
    """The target with no password at all (a job gets this as QUEUECTL_DB; it can reach the
    database through PGPASSWORD or ~/.pgpass if it needs to)."""
    if not is_postgres(target):
        return target
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(target)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hostinfo}" if at else parts.netloc
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("password="))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def resolve_target(db: str | None, option: str = "--db") -> str:
    """The database `db` names (`option` is how the user gave it, for messages), else
    $QUEUECTL_DB's, else the per-user default; a SQLite path comes back absolute."""
    # An empty --db or QUEUECTL_DB is refused, not read as "not given": it is what a script
    # passes when the variable it meant is unset (`--db "$QUEUE"`), and taking the default
    # queue then put its jobs where none of its workers would look.
    if db is not None:
        target, given_as = db, option
    elif ENV_VAR in os.environ:
        target, given_as = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        target, given_as = default_db_path(), ""
    if not target.strip():
        fix = (f"; unset it to use the default queue ({default_db_path()})"
               if given_as != option else "")
        raise InputError(f"{given_as} is empty{fix}; give a file path or a postgresql:// URL")
    if is_postgres(target):
        return target
    if target in (":memory:", "sqlite://:memory:", "sqlite:///:memory:"):
        # SQLite's name for a database in memory was taken as a file name, and a queue named
        # ':memory:' appeared in the current folder. In memory, every command would get a
        # queue of its own that ends with it: what was enqueued, no worker could ever see.
        raise InputError(f"{given_as} ':memory:' would be a queue that ends with the command "
                         "(each queuectl call is a process of its own); give a file path such "
                         "as ./queue.db, or a postgresql:// URL")
    if target.startswith("sqlite:///"):
        target = target.removeprefix("sqlite://")
    elif "://" in target:
        raise InputError(
            f"unsupported database URL {mask_password(target)!r}; use a file path or "
            "postgresql://..."
        )
    return os.path.abspath(os.path.expanduser(target))


def open_store(db: str | None = None, *, durable: bool = True, migrate: bool = True,
               create: bool = True) -> JobStore:
    """`create=False` is for commands that only look: where no SQLite file exists yet, they
    get an empty queue in memory, so a mistyped --db shows an empty queue instead of leaving
    a new file behind."""
    target = resolve_target(db)
    connector: Connector
    if is_postgres(target):
        from queuectl.store.postgres import PostgresConnector  # optional extra, imported late

        connector = PostgresConnector(target)  # always durable: DECISIONS.md 8
    else:
        from queuectl.store.sqlite import SQLiteConnector

        if not create and not os.path.exists(target):
            connector = SQLiteConnector(":memory:", durable=durable, shown_as=target)
        else:
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
