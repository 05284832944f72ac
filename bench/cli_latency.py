"""Figure 3: wall time of one CLI call (each call is a new process) against the same
interpreter importing what any such tool needs: `python -c "import sqlite3, json"`. On the
local PostgreSQL server too (no target), against importing the driver: `python -c "import
psycopg"`.

The queue holds a few hundred jobs in mixed states, as a queue in use does.
"""

from __future__ import annotations

from common import Bench, Postgres, Row, fmt_ms, median, write_jobs

TARGET_RATIO = 1.5


def _prepare(bench: Bench, db: str, folder: str) -> None:
    bench.cli(db, "enqueue", "--file", write_jobs(f"{folder}/done.jsonl", 300))
    bench.cli(db, "worker", "start", "--count", "2", "--burst", "--quiet")
    bench.cli(db, "enqueue", "--file", write_jobs(f"{folder}/failing.jsonl", 20, "false"))
    bench.cli(db, "enqueue", "--file", write_jobs(f"{folder}/pending.jsonl", 200))


def run(bench: Bench) -> list[Row]:
    folder = bench.fresh_dir("cli")
    db = f"{folder}/queue.db"
    _prepare(bench, db, folder)
    commands = {
        "baseline": [bench.python, "-c", "import sqlite3, json"],
        "enqueue": bench.cli_argv(db, "enqueue", '{"command": "true"}'),
        "status": bench.cli_argv(db, "status"),
        "list": bench.cli_argv(db, "list", "--limit", "50"),
    }
    pg = Postgres(bench)
    pg_missing = pg.unusable()
    pg_url = None
    if not pg_missing:
        pg_url = pg.create()
        _prepare(bench, pg_url, folder)
        commands |= {
            "pg-baseline": [bench.python, "-c", "import psycopg"],
            "pg-enqueue": bench.cli_argv(pg_url, "enqueue", '{"command": "true"}'),
            "pg-status": bench.cli_argv(pg_url, "status"),
        }
    try:
        return _timed_rows(bench, commands, pg_missing)
    finally:
        if pg_url is not None:
            pg.drop(pg_url)


def _timed_rows(bench: Bench, commands: dict[str, list[str]], pg_missing: str | None,
                ) -> list[Row]:
    names = list(commands)
    for name in names:  # warm the page cache and the bytecode of each path once
        bench.timed(commands[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    rounds = bench.sizes.cli_samples
    bench.log(f"figure 3: {rounds} interleaved samples of each call")
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            samples[name].append(bench.timed(commands[name]))
    med = {name: median(values) for name, values in samples.items()}
    base = med["baseline"]
    rows = []
    for name, label, target in (
        ("enqueue", "`enqueue '{\"command\": \"true\"}'` wall time", TARGET_RATIO),
        ("status", "`status` wall time", None),
        ("list", "`list --limit 50` wall time", None),
    ):
        ratio = med[name] / base
        rows.append(Row(
            "3 CLI call", label, f"{fmt_ms(med[name])}; ratio **{ratio:.2f}**",
            f"`python -c \"import sqlite3, json\"`: {fmt_ms(base)}",
            f"ratio <= {target}" if target else "",
            ratio <= target if target else None,
        ))
    if pg_missing:
        rows.append(Row("3 CLI call (PostgreSQL)", "`enqueue` and `status`", pg_missing))
        return rows
    pg_base = med["pg-baseline"]
    for name, label in (("pg-enqueue", "`enqueue '{\"command\": \"true\"}'` wall time, local "
                         "PostgreSQL server"),
                        ("pg-status", "`status` wall time, local PostgreSQL server")):
        rows.append(Row(
            "3 CLI call (PostgreSQL)", label,
            f"{fmt_ms(med[name])}; ratio **{med[name] / pg_base:.2f}**",
            f"`python -c \"import psycopg\"`: {fmt_ms(pg_base)} (`import sqlite3, json`: "
            f"{fmt_ms(base)})"))
    return rows
