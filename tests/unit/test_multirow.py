"""multirow.MultiRowInsert: which statements it takes, and that the rows it writes are the
rows executemany would have written, in order."""

from __future__ import annotations

import sqlite3

import pytest

from queuectl import sql
from queuectl.store.multirow import MultiRowInsert

INSERT = """-- a comment line, as the SQL files have
INSERT INTO t (a, b, c, note)
VALUES (:a, :b, :a, 'it''s (not) :b')"""


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, a, b, c, note)")
    return conn


@pytest.mark.parametrize("count, most", [(1, 500), (7, 3), (1000, 500), (10, 999)])
def test_rows_land_as_executemany_would_put_them(count, most):
    rows = [{"a": i, "b": f"row {i}", "unused": None} for i in range(count)]
    expected, got = _table(), _table()
    expected.executemany(INSERT, rows)
    multi = MultiRowInsert.of(INSERT, max_variables=most)
    assert multi is not None
    statements = list(multi.statements(rows))
    assert len(statements) == -(-count // multi.most)  # ceil: every row, no more statements
    for text, params in statements:
        got.execute(text, params)
    query = "SELECT n, a, b, c, note FROM t ORDER BY n"
    assert got.execute(query).fetchall() == expected.execute(query).fetchall()


@pytest.mark.parametrize("statement, rows", [
    ("INSERT INTO t (a) VALUES (:a)", [{"a": 1}, {"a": 2}]),
    ("INSERT INTO t (note) VALUES ('fixed')", [{}, {}, {}]),
])
def test_rows_of_one_value_or_none(statement, rows):
    expected, got = _table(), _table()
    expected.executemany(statement, rows)
    multi = MultiRowInsert.of(statement, max_variables=999)
    assert multi is not None
    for text, params in multi.statements(rows):
        got.execute(text, params)
    query = "SELECT n, a, b, c, note FROM t ORDER BY n"
    assert got.execute(query).fetchall() == expected.execute(query).fetchall()


def test_a_statement_holds_no_more_parameters_than_sqlite_allows():
    multi = MultiRowInsert.of(INSERT, max_variables=10)
    assert multi is not None and multi.most == 3  # 3 names per row (a, b, a)
    assert all(len(params) <= 10 for _, params in multi.statements([{"a": 1, "b": 2}] * 20))


@pytest.mark.parametrize("statement", [
    "UPDATE t SET a = :a",
    "INSERT INTO t (a) VALUES (:a) ON CONFLICT DO NOTHING",
    "INSERT INTO t (a) VALUES (:a) RETURNING n",
    "INSERT INTO t (a) SELECT :a",
    "INSERT INTO t (a) VALUES (coalesce(:a, 1))",  # nested parentheses: left alone
    "INSERT INTO t (a, b) SELECT :b, x FROM u WHERE y IN (VALUES (:a))",
])
def test_other_shapes_are_left_to_run_row_by_row(statement):
    assert MultiRowInsert.of(statement, max_variables=999) is None


def test_the_bulk_insert_of_the_sqlite_dialect_qualifies():
    """The statement a bulk enqueue runs: if a change to it made it run row by row again, a
    bulk enqueue would quietly take twice as long."""
    assert MultiRowInsert.of(sql.load("sqlite")["insert_job_batch"], 32766) is not None
