"""The SQL loader, and parity between the dialect files: the JobStore's logic is written once,
so every dialect must define exactly the same named blocks."""

import re
from pathlib import Path

import pytest

from queuectl import sql

SQL_DIR = Path(sql.__file__).parent
DIALECT_FILES = sorted(SQL_DIR.glob("*.sql"))
DIALECTS = [p.stem for p in DIALECT_FILES]
STORE_DIR = SQL_DIR.parent / "store"


def test_parse_splits_named_blocks():
    text = """-- a preamble comment that belongs to no block
-- name: first
SELECT 1;

-- name:second
SELECT 2
FROM t ;
"""
    assert sql.parse(text) == {"first": "SELECT 1", "second": "SELECT 2\nFROM t"}


def test_parse_keeps_migrations_verbatim():
    text = "-- name: migration_1\nCREATE TABLE a (x);\nCREATE TABLE b (y);\n"
    assert sql.parse(text) == {"migration_1": "\nCREATE TABLE a (x);\nCREATE TABLE b (y);\n"}


def test_parse_refuses_a_name_defined_twice():
    with pytest.raises(ValueError, match="'dup' is defined twice"):
        sql.parse("-- name: dup\nSELECT 1\n-- name: dup\nSELECT 2\n")


def test_parse_of_text_without_blocks_is_empty():
    assert sql.parse("-- just a comment\n") == {}


def test_there_is_a_dialect_file():
    assert "sqlite" in DIALECTS


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dialect_file_parses_into_non_empty_blocks(dialect):
    queries = sql.load(dialect)
    assert queries
    for name, body in queries.items():
        assert body.strip(), f"{dialect}.sql: block {name!r} is empty"
        assert "-- name" not in body


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrations_are_numbered_from_1_without_gaps(dialect):
    numbers = [n for n, _ in sql.migrations(dialect)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_dialect_defines_the_same_names():
    names = {dialect: set(sql.load(dialect)) - set(sql.ONE_STATEMENT_FORMS)
             - sql.POSTGRES_ONLY - sql.SQLITE_ONLY
             for dialect in DIALECTS}
    reference = names[DIALECTS[0]]
    for dialect, found in names.items():
        assert found == reference, (
            f"{dialect}.sql differs from {DIALECTS[0]}.sql: missing "
            f"{sorted(reference - found)}, extra {sorted(found - reference)}"
        )


def _names_used_by_the_store() -> set[str]:
    used = set()
    for path in STORE_DIR.glob("*.py"):
        used |= set(re.findall(r"\bdb\.(?:execute|fetch_one|fetch_all)\(\s*\"(\w+)\"",
                               path.read_text()))
    return used


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_query_the_store_uses_exists(dialect):
    used = _names_used_by_the_store()
    assert len(used) > 20  # the scan found the store's calls
    missing = (used - set(sql.load(dialect)) - set(sql.ONE_STATEMENT_FORMS)
               - sql.POSTGRES_ONLY - sql.SQLITE_ONLY)
    assert not missing, f"{dialect}.sql lacks {sorted(missing)}"


def test_load_is_cached():
    assert sql.load("sqlite") is sql.load("sqlite")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_one_statement_form_only_stands_for_names_every_dialect_defines(dialect):
    queries = sql.load(dialect)
    for name, parts in sql.ONE_STATEMENT_FORMS.items():
        assert all(part in queries for part in parts), (dialect, name)
