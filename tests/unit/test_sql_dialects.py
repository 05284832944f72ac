"""Both dialect files define the same named blocks, taking the same parameters, so the JobStore
can run any of them on either backend without knowing which one it has."""

from __future__ import annotations

import re

import pytest

from queuectl import sql

SQLITE_PARAM = re.compile(r"(?<!:):(\w+)")
POSTGRES_PARAM = re.compile(r"%\((\w+)\)s")


def test_both_dialects_define_the_same_blocks():
    def shared(dialect):
        return sorted(set(sql.load(dialect)) - set(sql.ONE_STATEMENT_FORMS) - sql.POSTGRES_ONLY
                      - sql.SQLITE_ONLY)

    assert shared("sqlite") == shared("postgres")


BATCH_COLUMNS = re.compile(r"^COPY \w+ \((.*?)\) FROM STDIN", re.DOTALL | re.MULTILINE)


def test_the_sqlite_only_attempt_insert_takes_insert_attempt_s_parameters_and_columns():
    """insert_attempt_after_finish is insert_attempt for a held result (DECISIONS.md 32):
    it must stay in step with it."""
    queries = sql.load("sqlite")
    plain, after_finish = queries["insert_attempt"], queries["insert_attempt_after_finish"]
    assert set(SQLITE_PARAM.findall(after_finish)) == set(SQLITE_PARAM.findall(plain))

    def columns(query):
        start = query.index("INSERT INTO")
        return query[start:query.index(")", start)]

    assert columns(after_finish) == columns(plain)
    assert "WHERE changes() = 1" in after_finish


def test_every_statement_that_records_a_run_counts_it():
    """The run counters (migration 8) have no trigger (its cost, DECISIONS.md 34): on
    PostgreSQL each statement that inserts into attempts adds to attempt_counts itself; on
    SQLite the store counts the runs whose attempt rows its statements inserted
    (JobStore._count_batch_runs; test_attempt_counts.py holds that a run recorded already is
    not counted again). The import is the one exception: the copy takes its source's counters
    whole (clear_attempt_counts, import_attempt_count). The integration tests check that every
    way of recording a run is counted, on both backends."""
    queries = sql.load("postgres")
    recording = {name for name, text in queries.items()
                 if "INSERT INTO attempts" in sql.code_of(text)
                 and not name.startswith("migration_")}
    assert recording == {"finish_job_with_attempt", "insert_attempt", "import_attempt"}
    for name in recording - {"import_attempt"}:
        assert "INSERT INTO attempt_counts" in queries[name], name
        assert "INSERT INTO run_minutes" in queries[name], name  # migration 10, the same way


@pytest.mark.parametrize("name", sorted(set(sql.load("sqlite")) - sql.SQLITE_ONLY))
def test_a_block_takes_the_same_parameters_in_both_dialects(name):
    sqlite_params = set(SQLITE_PARAM.findall(sql.load("sqlite")[name]))
    postgres_params = set(POSTGRES_PARAM.findall(sql.load("postgres")[name]))
    if name.endswith("_batch"):
        # Run by execute_many: on SQLite, the VALUES row once per job; on PostgreSQL, a COPY
        # of the rows' values for columns named as the rows' keys.
        assert postgres_params == set()
        columns = BATCH_COLUMNS.search(sql.load("postgres")[name]).group(1)
        postgres_params = {part.strip() for part in columns.split(",")}
    assert sqlite_params == postgres_params


@pytest.mark.parametrize("name", sorted(sql.load("postgres")))
def test_every_percent_sign_in_postgres_sql_is_a_parameter(name):
    # psycopg reads any other % as a broken placeholder, even inside a comment.
    text = sql.load("postgres")[name]
    if name.startswith("migration_"):
        return  # scripts run without parameters: psycopg leaves them alone
    assert "%" not in POSTGRES_PARAM.sub("", text).replace("%%", "")


def test_the_postgres_claim_skips_locked_rows_in_one_statement():
    claim = sql.load("postgres")["claim_any"]
    assert claim.count(";") == 0
    assert "FOR UPDATE SKIP LOCKED" in claim and "RETURNING *" in claim


def test_the_one_statement_finish_updates_the_job_exactly_as_finish_job_does():
    """finish_job_with_attempt repeats finish_job's UPDATE (SQL has no way to share it): a
    change to one must be made to the other."""
    def update_of(name):
        text = sql.load("postgres")[name]
        return text[text.index("UPDATE jobs"):text.index("RETURNING state")]

    assert update_of("finish_job_with_attempt") == update_of("finish_job")


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_claim_statement_sets_the_same_columns(dialect):
    """The batch forms (claim_*_many) repeat the one-job claim's SET clause, but for the token
    (the claim's, dotted with each job's seq): a column added to one must be added to all."""
    queries = sql.load(dialect)

    def set_clause(name):
        text = queries[name]
        clause = text[text.index("UPDATE jobs"):text.index("WHERE NOT EXISTS")]
        clause = re.sub(r"--[^\n]*\n", "", clause)  # comments differ
        return re.sub(r"lease_token = [^,]*,", "lease_token = TOKEN,", " ".join(clause.split()))

    names = [name for name in queries if name.startswith("claim_")]
    assert {"claim_any", "claim_any_many", "claim_in_queues"} <= set(names)
    assert len({set_clause(name) for name in names}) == 1, names
