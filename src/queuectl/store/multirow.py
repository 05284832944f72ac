"""One INSERT for many rows: `INSERT ... VALUES (:a, :b)` run as `INSERT ... VALUES (?, ?),
(?, ?), ...`, a few hundred rows per statement.

SQLite pays a fixed price per statement run, on top of its work per row: the statement is
reset, its parameters bound one by one, its cursors opened on the table and each index. With
executemany that price comes with every row; with several rows per statement it is shared.
A bulk enqueue of 100,000 jobs spent 2.05 s in executemany and 0.89 s this way (DECISIONS.md
§33). Parameters become positional: binding by name asks SQLite for each parameter's name.
"""

from __future__ import annotations

import re
from operator import itemgetter

from queuectl import sql

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

ROWS_PER_STATEMENT = 500  # beyond a few hundred, measured no faster
_SHAPE = re.compile(r"^(?P<head>.*\bVALUES\s*)(?P<row>\((?:[^()']|'[^']*')*\))\s*;?\s*$",
                    re.DOTALL | re.IGNORECASE)
_PARAMETER = re.compile(r"'[^']*'|(?<!:):(\w+)")


class MultiRowInsert:
    """`statement` with its one VALUES row repeated for a batch of rows.

    Only the plainest shape qualifies: the statement ends with its parenthesised row (nothing
    after it, such as ON CONFLICT or RETURNING, whose meaning could change with several rows).
    `of(statement)` says None for any other, and the caller runs it row by row."""

    def __init__(self, head: str, row: str, names: list[str], max_variables: int):
        self.head, self.names = head, names
        self.row = _PARAMETER.sub(lambda m: "?" if m.group(1) else m.group(0), row)
        self.most = max(1, min(ROWS_PER_STATEMENT, max_variables // max(1, len(names))))
        self._texts: dict[int, str] = {}

    @classmethod
    def of(cls, statement: str, max_variables: int) -> MultiRowInsert | None:
        text = sql.code_of(statement).strip()
        if not text.upper().startswith("INSERT"):
            return None
        shape = _SHAPE.match(text)
        if shape is None:
            return None
        names = [m.group(1) for m in _PARAMETER.finditer(shape["row"]) if m.group(1)]
        if any(m.group(1) for m in _PARAMETER.finditer(shape["head"])):
            return None  # a parameter outside the row: not one value per row
        return cls(shape["head"], shape["row"], names, max_variables)

    def statements(self, rows: list[dict[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
        """(SQL, positional parameters) for each slice of up to `most` rows, in row order."""
        values = values_of(self.names)
        for start in range(0, len(rows), self.most):
            chunk = rows[start : start + self.most]
            params: list[Any] = []
            for row in chunk:
                params += values(row)
            yield self.text(len(chunk)), params

    def text(self, count: int) -> str:
        """The statement for `count` rows (made once per count)."""
        text = self._texts.get(count)
        if text is None:
            text = self._texts[count] = self.head + ",\n".join([self.row] * count)
        return text


def values_of(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in `names` order: itemgetter, one call in C per row, where it returns a
    tuple (two names or more). PostgreSQL's COPY takes its rows' values the same way."""
    if len(names) > 1:
        return itemgetter(*names)
    return lambda row: tuple(row[name] for name in names)

