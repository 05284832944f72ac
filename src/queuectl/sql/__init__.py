"""Named SQL blocks, one file per dialect, parsed once per process.

A block starts with a line `-- name: NAME` and runs to the next such line. Blocks named
`migration_N` are the schema, applied in order of N. Both dialect files must define the same
names (tests/unit/test_sql.py checks it), so the store's logic is written once. The one
exception is ONE_STATEMENT_FORMS: a dialect may do in one statement what the others do in
several (the store uses it where the dialect defines it), saving a round trip per call.
The other is POSTGRES_ONLY: the journal of PostgreSQL workers lives in the database, where a
SQLite worker's is a file (journal.py), and one statement that saves only round trips.
And SQLITE_ONLY: the other half of finish_job_with_attempt, for a result held in a batch,
and the run counters' own statements.
"""

from __future__ import annotations

import os
import re
from functools import cache

# name -> the names it stands for; only PostgreSQL (data-modifying WITH) defines these.
ONE_STATEMENT_FORMS = {"finish_job_with_attempt": ("finish_job", "insert_attempt")}
# Used only by a PostgreSQL store (DECISIONS.md 31): the server-side journal, and a batch's
# claim for a worker that serves named queues in one statement (one round trip).
POSTGRES_ONLY = frozenset({"journal_write", "journal_read", "journal_clear", "journal_forget",
                           "journal_forget_orphans", "claim_in_queues_many"})
# Used only by a SQLite store (DECISIONS.md 32): insert_attempt, checking for itself that the
# finish_job sent just before it changed the job's row (a held result's two statements run
# together, after the Python that built them); and the statements that count recorded runs
# (34, 37), which PostgreSQL's statements that insert an attempt do themselves.
SQLITE_ONLY = frozenset({"insert_attempt_after_finish", "count_recorded_runs",
                         "count_finished_minutes"})

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"SQL block {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";").strip() if "migration_" not in name else body
    return queries


@cache
def load(dialect: str) -> dict[str, str]:
    # A plain open(), not importlib.resources: that import alone costs ~5 ms per CLI call.
    with open(os.path.join(os.path.dirname(__file__), f"{dialect}.sql"), encoding="utf-8") as f:
        text = f.read()
    return parse(text)


def code_of(statement: str) -> str:
    """A block without its `--` comment lines (the SQL files put them at the top): what a
    connector reads when it looks at a statement's shape."""
    return "\n".join(line for line in statement.splitlines()
                     if not line.lstrip().startswith("--"))


def migrations(dialect: str) -> list[tuple[int, str]]:
    found = [
        (int(name.removeprefix("migration_")), body)
        for name, body in load(dialect).items()
        if name.startswith("migration_")
    ]
    return sorted(found)
