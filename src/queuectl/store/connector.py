"""What the JobStore needs from a database: a handful of verbs over named queries.

SQLiteConnector and PostgresConnector implement this; nothing above them knows which one it has.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from queuectl.errors import Conflict  # noqa: F401 - where connectors used to find it
from queuectl.store.sent import Sent


class Connector(Protocol):
    dialect: str
    queries: dict[str, str]  # the dialect's named SQL (sql.load), ONE_STATEMENT_FORMS included

    def execute(self, name: str, params: dict[str, Any] | None = None) -> int: ...

    def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> dict | None: ...

    def fetch_one_last(self, name: str, params: dict[str, Any] | None = None) -> dict | None:
        """fetch_one for the last statement of the (outermost) transaction: the connector may
        send the COMMIT along with it. Nothing may follow it in that transaction."""
        ...

    def fetch_all_last(self, name: str, params: dict[str, Any] | None = None) -> list[dict]:
        """fetch_all for the last statement of the (outermost) transaction, as fetch_one_last."""
        ...

    def execute_then_fetch_all_last(self, name: str, params: dict[str, Any],
                                    last_name: str, last_params: dict[str, Any],
                                    ) -> tuple[int, list[dict]]:
        """execute(name), then fetch_all_last(last_name); the connector may send both (and the
        COMMIT) at once."""
        ...

    def queue(self, name: str, params: dict[str, Any]) -> Sent:
        """Run a statement whose outcome nobody needs before the transaction ends, as late as
        the connector likes: PostgreSQL sends it with the transaction's next statement, in one
        round trip (a batch's results: DECISIONS.md 31); SQLite, when it comes before the
        transaction's first statement, with the next one too, so that the Python in between
        runs before the write lock is taken (DECISIONS.md 32), and otherwise now."""
        ...

    def fetch_all(self, name: str, params: dict[str, Any] | None = None) -> list[dict]: ...

    def execute_many(self, name: str, rows: list[dict[str, Any]]) -> None:
        """The statement once per row, all rows or none (a savepoint inside the transaction)."""
        ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def run_script(self, script: str) -> None: ...

    def changed(self) -> bool:
        """Whether anything may have been committed by others since the last call."""
        ...

    def change_fd(self) -> int | None:
        """A descriptor that turns readable when `changed()` may have news, or None (poll)."""
        ...

    def close(self) -> None: ...

    def describe(self) -> str: ...
