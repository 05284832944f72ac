"""The PostgreSQL connector: one connection for the queries, and one more, opened lazily by the
first `changed()`, that LISTENs so idle workers wake up as soon as a job becomes claimable.

psycopg is imported only here. The SQLite path must run from a bare checkout with the standard
library alone, so `open_store` imports this module only for postgresql:// URLs.

Connection loss: a call that finds the connection broken drops it and raises DatabaseUnavailable;
the next call connects again. A statement is never retried here: after a loss we cannot know
whether it committed, and the callers (the worker loop, the CLI) already handle that error.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

try:
    import psycopg
    from psycopg import pq
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.rows import dict_row
except ImportError:  # the [postgres] extra is not installed; say so when a URL asks for it
    psycopg = None  # type: ignore[assignment]

from queuectl import sql
from queuectl.errors import Conflict, DatabaseUnavailable, InputError, QueueError
from queuectl.store import mask_password
from queuectl.store.multirow import values_of
from queuectl.store.sent import Sent

NOTIFY_CHANNEL = "queuectl"  # the SQL's pg_notify calls name it too
LISTEN_RETRY_SECONDS = 1.0
# libpq waits forever by default: a CLI call should give up on a silent host, and a worker
# should notice a server that vanished without closing the connection. A URL may override.
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "queuectl",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
# A session frozen inside a transaction (SIGSTOP, a swapped-out host, Ctrl-Z) keeps its row
# locks: workers that need the same job or counter row would wait for it without end, and the
# job could not be recovered. Ours hold a transaction for milliseconds; the server ends any
# session idle in one for this long, which rolls it back and frees its locks.
IDLE_IN_TRANSACTION_TIMEOUT = "30s"
NOT_INSTALLED = "PostgreSQL support is not installed: pip install 'queuectl[postgres]'"


class PostgresConnector:
    dialect = "postgres"

    def __init__(self, url: str):
        """Every session keeps the server's synchronous_commit (on): unlike SQLite's NORMAL,
        which loses commits only when the machine goes down, asynchronous commits are lost
        when the server process crashes, and a lost claim lets a second worker start a job
        that is still running (DECISIONS.md 8)."""
        if psycopg is None:
            raise QueueError(NOT_INSTALLED)
        self.url = url
        self.queries = sql.load(self.dialect)
        self._conninfo, self._where, self._password = _parse_url(url)
        self._in_transaction = False
        self._begin_pending = False  # in a transaction whose BEGIN goes with its first statement
        self._committed_early = False  # in a transaction whose COMMIT went with fetch_one_last
        # Statements queued in this transaction (queue()): sent with the next one (_run_all).
        self._queued: list[tuple[str, dict[str, Any], Sent]] = []
        self._pipeline = psycopg.Pipeline.is_supported()  # libpq 14 or later
        self._own_pid: int | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_retry_at = 0.0
        self._notified = False
        # Connect now, like SQLite opens its file: a wrong URL fails the command at once.
        self._conn: psycopg.Connection[dict[str, Any]] | None = self._connect()

    # -- the handful of verbs the JobStore uses -------------------------------------------

    def execute(self, name: str, params: dict[str, Any] | None = None) -> int:
        return self._run(self.queries[name], params).rowcount

    def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> dict | None:
        rows = self._run(self.queries[name], params).fetchall()
        return rows[0] if rows else None

    def fetch_one_last(self, name: str, params: dict[str, Any] | None = None) -> dict | None:
        """The statement and COMMIT in one pipeline: one round trip instead of two (with a
        BEGIN still pending, all three travel together). The answer is read only after the
        COMMIT's, so a row is never returned from a transaction that did not commit."""
        if not self._in_transaction or not self._pipeline or not params:
            return self.fetch_one(name, params)
        rows = self._run(self.queries[name], params, commit=True).fetchall()
        self._committed_early = True  # transaction() sends no COMMIT of its own
        return rows[0] if rows else None

    def fetch_all_last(self, name: str, params: dict[str, Any] | None = None) -> list[dict]:
        """fetch_one_last for a statement that returns several rows."""
        if not self._in_transaction or not self._pipeline or not params:
            return self.fetch_all(name, params)
        rows = self._run(self.queries[name], params, commit=True).fetchall()
        self._committed_early = True  # transaction() sends no COMMIT of its own
        return rows

    def execute_then_fetch_all_last(self, name: str, params: dict[str, Any],
                                    last_name: str, last_params: dict[str, Any],
                                    ) -> tuple[int, list[dict]]:
        """execute(name), then fetch_all_last(last_name), all in one pipeline with the COMMIT
        (and a pending BEGIN): one round trip for a job's result and its worker's next claim,
        where it took two. The first statement's row count, like every answer, is read only
        after the COMMIT's, and a failure of either sends nothing after it: the transaction
        rolls back as a whole."""
        if not self._in_transaction or not self._pipeline or not params or not last_params:
            return self.execute(name, params), self.fetch_all_last(last_name, last_params)
        first, last = self._run_all([(self.queries[name], params),
                                     (self.queries[last_name], last_params)], commit=True)
        self._committed_early = True  # transaction() sends no COMMIT of its own
        return first.rowcount, last.fetchall()

    def queue(self, name: str, params: dict[str, Any]) -> Sent:
        """Inside a transaction, and with pipeline mode: held back and sent in one pipeline
        with the transaction's next statement or its COMMIT, so a batch's results cost one
        round trip, not one each. A failure then fails that statement's call, and the
        transaction rolls back as a whole."""
        if not self._in_transaction or not self._pipeline or not params:
            return Sent(self.execute(name, params))
        sent = Sent()
        self._queued.append((self.queries[name], params, sent))
        return sent

    def fetch_all(self, name: str, params: dict[str, Any] | None = None) -> list[dict]:
        return self._run(self.queries[name], params).fetchall()

    def execute_many(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Run a named statement for every row, all or nothing. On PostgreSQL the block is a
        `COPY table (columns) FROM STDIN`, which streams the rows, each row's values taken by
        the column names: about twice as fast as the server unpacking a JSON array
        (DECISIONS.md §33). A savepoint keeps the caller's transaction usable when it fails."""
        statement = self.queries[name]
        columns = _copy_columns(statement)
        if columns is None:
            raise ValueError(f"{name}: execute_many on PostgreSQL runs COPY ... FROM STDIN")
        self._run("SAVEPOINT execute_many")
        try:
            self._copy(statement, columns, rows)
        except BaseException:
            self._run_quietly("ROLLBACK TO SAVEPOINT execute_many")
            raise
        self._run("RELEASE SAVEPOINT execute_many")

    def _copy(self, statement: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        conn = self._conn
        assert conn is not None  # the SAVEPOINT before it just ran on it
        values = values_of(columns)
        try:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(values(row))
        except psycopg.Error as exc:
            raise self._translated(conn, exc) from None

    def _run_quietly(self, statement: str) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute(statement)
        except psycopg.Error:
            if conn.closed or conn.broken:
                self._drop_connection()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:  # nested use joins the outer transaction
            yield
            return
        # BEGIN is not sent on its own: the first statement takes it along in one round trip
        # (see _run), a tenth of a short transaction's time on a local server.
        self._begin_pending = True
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self._queued.clear()  # never sent; the transaction is rolled back as a whole
            if self._begin_pending:  # nothing was sent: nothing to roll back
                self._begin_pending = False
            elif self._committed_early:  # committed already: nothing to roll back either
                self._committed_early = False
            else:
                self._rollback_quietly()
            raise
        self._in_transaction = False
        if self._committed_early:  # fetch_one_last sent the COMMIT with the last statement
            self._committed_early = False
            return
        if self._begin_pending and not self._queued:  # an empty transaction
            self._begin_pending = False
            return
        if self._conn is not None and self._conn.info.transaction_status == \
                pq.TransactionStatus.INERROR:
            # A caller swallowed a failed statement; COMMIT would silently roll back.
            self._rollback_quietly()
            raise QueueError(f"a statement failed in a transaction on {self._where}; "
                             "nothing of it was written")
        if self._queued:  # with the COMMIT, in one pipeline
            try:
                self._run_all([], commit=True)
            except BaseException:  # a queued statement failed: the COMMIT never ran
                self._rollback_quietly()
                raise
            return
        self._run("COMMIT")

    def run_script(self, script: str) -> None:
        # Without parameters psycopg sends the text as one simple query: several statements.
        self._run(script, None)

    def changed(self) -> bool:
        """True when a NOTIFY from another connection arrived since the last call (or when
        the LISTEN connection was just (re)opened or lost, as notifications may have been
        missed then). Costs one non-blocking select(), no query."""
        if self._listener is None:
            if time.monotonic() < self._listen_retry_at:
                return False  # the worker's own poll covers the gap until we listen again
            self._listen()
            return True
        self._drain_notifications()
        notified, self._notified = self._notified, False
        return notified

    def change_fd(self) -> int | None:
        """The LISTEN connection's socket, readable when a notification (or anything) arrives;
        None while not listening (the worker polls `changed()` then)."""
        if self._listener is None:
            return None
        try:
            return self._listener.pgconn.socket
        except (psycopg.Error, OSError):
            return None

    def close(self) -> None:
        for conn in (self._listener, self._conn):
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
        self._listener = self._conn = None

    def describe(self) -> str:
        return mask_password(self.url)

    # -- connections --------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self._where}: {self._reason(exc)}"
            ) from None
        self._own_pid = conn.info.backend_pid
        try:
            # A SET, not the `options` startup parameter: poolers such as PgBouncer refuse
            # startup parameters they do not know.
            conn.execute("SET idle_in_transaction_session_timeout = "
                         f"'{IDLE_IN_TRANSACTION_TIMEOUT}'")
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseUnavailable(
                f"lost the connection to PostgreSQL at {self._where}: {self._reason(exc)}"
            ) from None
        return conn

    def _run(self, statement: str, params: dict[str, Any] | None = None,
             commit: bool = False) -> psycopg.Cursor[dict[str, Any]]:
        return self._run_all([(statement, params)], commit)[-1]

    def _run_all(self, statements: list[tuple[str, dict[str, Any] | None]],
                 commit: bool = False) -> list[psycopg.Cursor[dict[str, Any]]]:
        """Send statements and turn psycopg's errors into ours. A BEGIN still pending goes
        in one pipeline with them, and so does COMMIT when `commit` (fetch_one_last). Without
        pipeline mode (libpq before 14), or for a statement without parameters, which may be
        a script of several (a pipeline sends each as one extended-protocol query, which takes
        only one), BEGIN goes first on its own; nothing asks to commit then."""
        if self._committed_early and self._in_transaction:
            raise RuntimeError("a statement after the one fetch_one_last ran as the last")
        if self._conn is None:
            # Never carry on a transaction on a new connection (one whose BEGIN is still to
            # be sent has not started: it may).
            if self._in_transaction and not self._begin_pending:
                raise DatabaseUnavailable(f"lost the connection to PostgreSQL at {self._where}")
            self._conn = self._connect()
        conn = self._conn
        # Read pending notifications even while busy, so they never pile up on the server
        # during a long job (the queue of undelivered NOTIFYs is shared by the whole cluster).
        self._drain_notifications()
        begin, self._begin_pending = self._begin_pending, False
        queued, self._queued = self._queued, []
        if queued:
            statements = [(text, params) for text, params, _ in queued] + statements
        try:
            if not (begin or commit) and len(statements) == 1:
                statement, params = statements[0]
                cursors = [conn.execute(statement, params or None)]
            elif not self._pipeline or not all(params for _, params in statements):
                if begin:
                    conn.execute("BEGIN")
                cursors = [conn.execute(statement, params or None)
                           for statement, params in statements]
            else:
                with conn.pipeline():
                    if begin:
                        conn.execute("BEGIN")
                    cursors = [conn.execute(statement, params)
                               for statement, params in statements]
                    if commit:
                        conn.execute("COMMIT")
            for (_, _, sent), cursor in zip(queued, cursors, strict=False):  # then ours
                sent.rowcount = cursor.rowcount
            return cursors[len(queued):]
        except psycopg.Error as exc:
            raise self._translated(conn, exc) from None

    def _translated(self, conn: psycopg.Connection[Any], exc: psycopg.Error) -> Exception:
        """psycopg's error as ours; a connection it broke is dropped."""
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return Conflict(self._reason(exc))
        if isinstance(exc, psycopg.errors.InFailedSqlTransaction):
            return QueueError(f"a statement failed earlier in this transaction on "
                              f"{self._where}; nothing of it was written")
        if conn.closed or conn.broken:
            self._drop_connection()
            return DatabaseUnavailable(
                f"lost the connection to PostgreSQL at {self._where}: {self._reason(exc)}")
        return QueueError(f"database error on {self._where}: {self._reason(exc)}")

    def _rollback_quietly(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            if conn.closed or conn.broken:
                self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    # -- LISTEN/NOTIFY ------------------------------------------------------------------------

    def _listen(self) -> None:
        try:
            listener = psycopg.connect(self._conninfo, autocommit=True)
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            self._listen_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            return
        self._listener = listener
        self._notified = False

    def _drain_notifications(self) -> None:
        listener = self._listener
        if listener is None:
            return
        pgconn = listener.pgconn
        try:
            readable, _, _ = select.select([pgconn.socket], [], [], 0)
            if readable:
                pgconn.consume_input()
            while (note := pgconn.notifies()) is not None:
                if note.be_pid != self._own_pid:  # our own commits tell us nothing new
                    self._notified = True
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")
        except (psycopg.Error, OSError, ValueError):
            # Lost (server restart, terminated backend): wake the worker once so it polls,
            # and listen again a little later.
            self._listener = None
            self._notified = True
            self._listen_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            try:
                listener.close()
            except psycopg.Error:
                pass

    # -- messages -----------------------------------------------------------------------------

    def _reason(self, exc: Exception) -> str:
        """One line from a psycopg error: the server's message, or libpq's without its
        'connection to server at ... failed:' preamble; never the password."""
        diag = getattr(exc, "diag", None)
        text = (diag.message_primary if diag is not None else None) or str(exc)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = re.sub(r"^.*?connection to server .*? failed:\s*", "", text)
        text = re.sub(r"^FATAL:\s*", "", text)
        if self._password:
            text = text.replace(self._password, "***")
        return text


_COPY = re.compile(r"^\s*COPY\s+\w+\s*\(([^)]*)\)\s+FROM\s+STDIN\s*;?\s*$",
                   re.IGNORECASE)


def _copy_columns(statement: str) -> list[str] | None:
    """The column list of a `COPY table (a, b) FROM STDIN` block (comments aside), or None
    for any other statement."""
    found = _COPY.match(sql.code_of(statement))
    return None if found is None else [name.strip() for name in found.group(1).split(",")]


def _parse_url(url: str) -> tuple[str, str, str | None]:
    """(conninfo with our defaults under the URL's own settings, 'host:port (database db)'
    for messages, the password to keep out of them)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        secret = urlsplit(url).password
        if secret:
            reason = reason.replace(secret, "***")
        raise InputError(f"invalid PostgreSQL URL {mask_password(url)}: {reason}") from None
    for key, value in CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    host = params.get("host") or "the local socket"
    where = f"{host}:{params.get('port') or 5432}"
    if params.get("dbname"):
        where += f" (database {params['dbname']})"
    password = params.get("password")
    return make_conninfo("", **params), where, str(password) if password else None
