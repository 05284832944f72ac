"""The SQLite connector: one file, WAL mode, every writing transaction BEGIN IMMEDIATE.

Why IMMEDIATE: a deferred transaction that reads first and writes later cannot upgrade its
snapshot when another writer got in between, and fails with "database is locked" at once,
whatever the busy timeout. Taking the write lock up front makes writers queue on the busy
timeout instead, so concurrent CLI calls and workers never see that error.
"""

from __future__ import annotations

import os
import sqlite3
import time

from queuectl import sql
from queuectl.errors import Conflict, QueueError
from queuectl.store.sent import Sent

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any

    # Imported where used: a bulk insert, a worker's connection; not every CLI call.
    from queuectl.store.multirow import MultiRowInsert
    from queuectl.store.turns import WriteTurns

BUSY_TIMEOUT_SECONDS = 60.0
# A worker's connection checkpoints the WAL itself after this many of its own commits (a job
# commits about a dozen pages), instead of SQLite's automatic checkpoint: see _committed.
CHECKPOINT_EVERY_COMMITS = 100
# When the WAL starts over, a file larger than this is cut back to it. Between checkpoints it
# holds a few MB; a bulk enqueue of a million jobs leaves a couple of hundred, which would
# otherwise stay on disk for as long as any worker keeps the queue open.
WAL_SIZE_LIMIT = 32 << 20
SQLITE_HEADER = b"SQLite format 3\x00"

# sqlite3 binds None through its adapter protocol: two failed attribute lookups, each raising
# and clearing an AttributeError, about 0.65 µs per None parameter (a new job's row has three,
# a worker's result several; DECISIONS.md 32). An adapter registered for NoneType is found
# first, by one dict lookup, and still binds NULL: `{}.get` is a function written in C that
# returns None for any key. Process-wide, with no visible effect.
sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]  # (overloads)


def _split_statements(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        statements.append(current.strip())
    return [s for s in statements if s.strip(" ;\n")]


def _prepare_file(path: str) -> bool:
    """Create the file 0600 (and missing folders 0700) ourselves, so SQLite never creates a
    world-readable queue; SQLite gives the -wal and -shm files the database file's mode.
    True if this call created it."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _refuse_foreign_file(path: str) -> None:
    """A file that is not a queue must come out of our hands byte for byte as it went in, so
    look before anything is written (switching to WAL would already change its header)."""
    deadline = time.monotonic() + 2.0
    while os.path.getsize(path) == 0:
        # Another process may have just created it (as _prepare_file does) and be about to
        # write the header: give it a moment before calling the file empty.
        if time.monotonic() > deadline:
            raise QueueError(f"{path} is an empty file, not a queue database; delete it or "
                             "point --db at another path")
        time.sleep(0.02)
    with open(path, "rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise QueueError(f"{path} is not a SQLite database, so not a queue; point --db at "
                             "another path")


def _while_busy(attempt):
    """Run `attempt` again for as long as another connection holds the lock it needs, up to
    BUSY_TIMEOUT_SECONDS. Connections have no busy timeout of their own (see SQLiteConnector):
    SQLite's handler sleeps 1 to 100 ms at a time, far longer than our writes hold the lock,
    so we back off from 50 us to 5 ms instead. A busy statement did nothing, so running it
    again is always safe."""
    waited, pause = 0.0, 0.00005
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or waited >= BUSY_TIMEOUT_SECONDS:
                raise
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.005)


def _as_dicts(cursor: sqlite3.Cursor) -> list[dict]:
    """A cursor's rows as dicts. The connection returns plain tuples, and each becomes a dict
    by zipping it with the column names: four times faster than dict() of a sqlite3.Row, which
    looks every column up by name. A worker converts its claimed jobs while it holds the write
    lock, 28 columns each (bench figure 2)."""
    rows = cursor.fetchall()
    if not rows:
        return rows
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock a statement needed: the statement did nothing."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc))


def _refuse_foreign_schema(conn: sqlite3.Connection, path: str) -> None:
    from queuectl.store.jobstore import SCHEMA_VERSION

    tables = {row[0] for row in _while_busy(lambda: conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall())}
    if tables and "queuectl_meta" not in tables:
        raise QueueError(f"{path} is not a queuectl database (it holds other tables); point "
                         "--db at a new file")
    if "queuectl_meta" in tables:
        row = _while_busy(lambda: conn.execute(
            "SELECT value FROM queuectl_meta WHERE key = 'schema_version'").fetchone())
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise QueueError(f"{path} has schema version {row[0]}, newer than this queuectl "
                             f"supports ({SCHEMA_VERSION}); upgrade queuectl")


class SQLiteConnector:
    dialect = "sqlite"

    def __init__(self, path: str, durable: bool = True, shown_as: str | None = None):
        """`durable` picks synchronous=FULL (every commit reaches the disk before we return) for
        the CLI, whose enqueue must survive power loss; workers use NORMAL, where a power cut can
        lose only their last state changes, which at worst re-runs a job (see DECISIONS.md)."""
        self.path = path
        self.shown_as = shown_as  # what describe() says (an in-memory stand-in's real path)
        self.queries = sql.load(self.dialect)
        # Workers (durable=False) checkpoint for themselves (_committed); the CLI keeps SQLite's
        # automatic checkpoint. An in-memory database has no WAL.
        self._checkpoint_every = (None if durable or path == ":memory:"
                                  else CHECKPOINT_EVERY_COMMITS)
        self._commits = 0
        try:
            existed = path != ":memory:" and not _prepare_file(path)
            if existed:
                _refuse_foreign_file(path)
            # timeout=0: we wait for the lock ourselves (see _run), in steps far finer than
            # SQLite's own busy handler, whose sleeps of 1 to 100 ms dwarf a write that holds
            # the lock for well under a millisecond.
            self.conn = sqlite3.connect(
                path, timeout=0, isolation_level=None, check_same_thread=False
            )
            if existed:
                try:
                    _refuse_foreign_schema(self.conn, path)
                except BaseException:
                    self.conn.close()
                    raise
            if path != ":memory:":
                self._use_wal()
                self.conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self.conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            if self._checkpoint_every is not None:
                self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        except PermissionError as exc:
            raise QueueError(f"cannot open the queue database {path}: {exc.strerror}") from None
        except (sqlite3.DatabaseError, OSError) as exc:
            raise QueueError(f"cannot open the queue database {path}: {exc}") from None
        self._in_transaction = False
        self._begin_pending = False  # BEGIN IMMEDIATE waits for the first statement (_run)
        self._queued: list[tuple[str, dict[str, Any], Sent]] = []  # held back by queue()
        self._multi_row: dict[str, MultiRowInsert | None] = {}  # by statement name
        # Workers queue for the write lock through a flock that wakes them when it is free
        # (turns.py); the CLI's rare writes poll for it as before.
        self._turns: WriteTurns | None = None
        if self._checkpoint_every is not None:
            # Workers only: they import these anyway; a CLI call does not need them.
            from queuectl.journal import journals_folder
            from queuectl.store.turns import WriteTurns

            try:
                self._turns = WriteTurns(journals_folder(os.path.realpath(path)))
            except OSError:
                pass  # no folder to wait on (read-only place?): poll for the lock as the CLI does
        self._turn_held = False
        self._data_version: int | None = None
        self._watch_fd: int | None = None  # see change_fd()
        self._watch_tried = False

    def _use_wal(self) -> None:
        """Switch a new file to WAL. The switch needs the exclusive lock, which several
        processes opening a brand-new queue at once all want: wait for it like for any lock."""

        def switch() -> None:
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal" and self.conn.execute(
                    "PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                # SQLite answers with the old mode when it could not switch: try again.
                raise sqlite3.OperationalError("database is locked (journal mode unchanged)")

        try:
            _while_busy(switch)
        except sqlite3.OperationalError as exc:
            raise QueueError(f"could not switch {self.path} to WAL mode: {exc}") from None

    # -- the handful of verbs the JobStore uses -------------------------------------------

    def execute(self, name: str, params: dict[str, Any] | None = None) -> int:
        return self._run(self.queries[name], params).rowcount

    def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> dict | None:
        # fetchall, not fetchone: SQLite refuses to COMMIT while a RETURNING cursor is unread.
        rows = _as_dicts(self._run(self.queries[name], params))
        return rows[0] if rows else None

    def fetch_one_last(self, name: str, params: dict[str, Any] | None = None) -> dict | None:
        return self.fetch_one(name, params)  # a local COMMIT costs no round trip to save

    def fetch_all_last(self, name: str, params: dict[str, Any] | None = None) -> list[dict]:
        return self.fetch_all(name, params)

    def execute_then_fetch_all_last(self, name: str, params: dict[str, Any],
                                    last_name: str, last_params: dict[str, Any],
                                    ) -> tuple[int, list[dict]]:
        # One process, no round trips: simply one after the other.
        return self.execute(name, params), self.fetch_all(last_name, last_params)

    def queue(self, name: str, params: dict[str, Any]) -> Sent:
        """No round trip to save here, but the write lock's time: before the transaction's
        first statement, held back (with the BEGIN) until its next statement or its COMMIT,
        then run one after the other. The Python that builds a batch's held results then runs
        before this process takes the database's one write lock (DECISIONS.md 32)."""
        if not self._begin_pending:
            return Sent(self.execute(name, params))
        sent = Sent()
        self._queued.append((self.queries[name], params, sent))
        return sent

    def fetch_all(self, name: str, params: dict[str, Any] | None = None) -> list[dict]:
        return _as_dicts(self._run(self.queries[name], params))

    def execute_many(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Run a named statement once per row, all or nothing: a failing row undoes the rows
        before it (a savepoint), and the caller's transaction carries on. A plain INSERT of
        one VALUES row runs as one INSERT of many rows per few hundred (multirow.py). One row
        (one `enqueue`, the commonest call) runs as it is: a statement is all or nothing by
        itself, and the multi-row machinery would be most of that call's work."""
        statement = self.queries[name]
        if len(rows) == 1:
            self._run(statement, rows[0])
            return
        if name not in self._multi_row:
            from queuectl.store.multirow import MultiRowInsert  # bulk inserts only

            self._multi_row[name] = MultiRowInsert.of(
                statement, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        multi = self._multi_row[name]
        self._run("SAVEPOINT execute_many")
        try:
            if multi is None:
                self._guarded(lambda: self.conn.executemany(statement, rows))
            else:
                for text, params in multi.statements(rows):
                    self._execute(text, params)  # type: ignore[arg-type]  # positional
        except BaseException:
            self.conn.execute("ROLLBACK TO execute_many")
            self.conn.execute("RELEASE execute_many")
            raise
        self._run("RELEASE execute_many")

    def transaction(self) -> _Transaction | _Joined:
        """A writing transaction around the `with` block; nested use joins the outer one.
        BEGIN IMMEDIATE is sent with the block's first statement, not at `with`: the Python
        that prepares the statements then runs before this process takes the database's one
        write lock, so the other writers wait only for SQL (see DECISIONS.md 24)."""
        return _JOINED if self._in_transaction else _Transaction(self)

    def run_script(self, script: str) -> None:
        for statement in _split_statements(script):
            self._run(statement)

    def change_fd(self) -> int | None:
        """A descriptor that becomes readable when the WAL file is written (by anyone), for an
        idle worker to wait on; None where inotify is unavailable (the worker polls then).
        The watch exists from the first call on, so call it before looking for work."""
        if not self._watch_tried and self.path != ":memory:":
            self._watch_tried = True
            from queuectl.filewatch import watch_writes

            self._watch_fd = watch_writes(self.path + "-wal")
        return self._watch_fd

    def changed(self) -> bool:
        """True when another connection committed since the last call: a cheap idle poll."""
        if self._watch_fd is not None:
            from queuectl.filewatch import drain

            drain(self._watch_fd)  # before looking, so a write after this wakes the next wait
        version = self._run("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return changed

    def close(self) -> None:
        if self._watch_fd is not None:
            os.close(self._watch_fd)
            self._watch_fd = None
        self.conn.close()

    def describe(self) -> str:
        if self.shown_as is not None:
            return f"{self.shown_as} (no queue there yet)"
        return os.path.abspath(self.path)

    def _run(self, statement: str, params: dict[str, Any] | None = None) -> sqlite3.Cursor:
        if self._begin_pending:
            if self._turns is not None and not self._turn_held:
                self._turns.take()
                self._turn_held = True  # given back when the transaction ends (_Transaction)
            self._guarded(lambda: self.conn.execute("BEGIN IMMEDIATE"))
            self._begin_pending = False  # not before: a BEGIN that failed began nothing
            if self._queued:
                self._send_queued()
        return self._execute(statement, params or {})

    def _execute(self, statement: str, params: dict[str, Any]) -> sqlite3.Cursor:
        try:
            # Straight to sqlite3: the busy loop and its wrappers (a lambda, three calls) only
            # when the lock was taken. A worker runs five statements per job.
            return self.conn.execute(statement, params)
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise self._translated(exc) from None
        return self._guarded(lambda: self.conn.execute(statement, params))

    def _send_queued(self) -> None:
        queued, self._queued = self._queued, []
        for statement, params, sent in queued:
            sent.rowcount = self._execute(statement, params).rowcount

    def _committed(self) -> None:
        """Count a commit; every CHECKPOINT_EVERY_COMMITS, checkpoint the WAL, holding the
        write lock. SQLite's automatic checkpoint runs after a commit that left the WAL over
        1,000 pages, once the write lock is released. Workers that take turns with the lock
        then never let a checkpoint finish before the next writer appends, so the WAL never
        starts over, stays over the mark, and every commit runs another checkpoint of the
        few pages before it: two fsyncs per job (bench figure 2: about 6,000 jobs/s instead
        of 9,000 to 10,000). RESTART takes the write lock while it copies, so it copies
        everything, and the next writer starts the WAL over. When another process holds the
        lock, SQLite copies what it can without it, and the next round tries again
        (DECISIONS.md 27)."""
        if self._checkpoint_every is None:
            return
        self._commits += 1
        if self._commits >= self._checkpoint_every:
            self._commits = 0
            try:
                self.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            except sqlite3.Error:  # housekeeping only: the next round tries again
                pass

    def _guarded(self, attempt):
        try:
            return _while_busy(attempt)
        except sqlite3.Error as exc:
            raise self._translated(exc) from None

    def _translated(self, exc: sqlite3.Error) -> Exception:
        if isinstance(exc, sqlite3.IntegrityError):
            return Conflict(str(exc))
        if isinstance(exc, sqlite3.OperationalError):
            return QueueError(f"database error on {self.path}: {exc}")
        if isinstance(exc, sqlite3.DatabaseError):
            return QueueError(f"{self.path} is not a usable queue database: {exc}")
        return exc


class _Transaction:
    """SQLiteConnector.transaction(). A class rather than a @contextmanager generator: a
    worker enters three of these per job (two of them nested), so their cost adds up."""

    __slots__ = ("db",)

    def __init__(self, db: SQLiteConnector):
        self.db = db

    def __enter__(self) -> None:
        self.db._in_transaction = True
        self.db._begin_pending = True  # sent by the first statement (SQLiteConnector._run)

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self._end(kind)
        finally:
            db = self.db
            if db._turn_held:  # after the checkpoint too: it holds the write lock
                db._turn_held = False
                db._turns.give()  # type: ignore[union-attr]  # held only with turns

    def _end(self, kind) -> None:
        db = self.db
        db._in_transaction = False
        if kind is not None:
            db._queued.clear()  # held back, never sent: nothing of them to undo
        if db._begin_pending and not db._queued:  # no statement ran: nothing to commit
            db._begin_pending = False
            return
        if kind is not None:
            if db.conn.in_transaction:  # some errors end the transaction themselves
                db.conn.execute("ROLLBACK")
            return
        try:
            db._run("COMMIT")  # preceded by BEGIN and the held statements, if none ran yet
        except BaseException:
            db._begin_pending = False
            db._queued.clear()
            if db.conn.in_transaction:  # never leave it open: the next BEGIN would fail
                db.conn.execute("ROLLBACK")
            raise
        db._committed()


class _Joined:
    """A nested transaction(): part of the outer one, which commits or rolls back."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, traceback) -> None:
        return None


_JOINED = _Joined()
