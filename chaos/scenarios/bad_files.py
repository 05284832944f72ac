"""Scenario 7, bad files (SQLite only): a --db that is not a usable queue gets one clear error
line, a non-zero exit, and stays byte for byte as it was, for `status`, `enqueue` and
`worker start --burst`. The same checks as tests/acceptance/test_bad_files.py, through the CLI.

A read-only file is not checked: the suite runs as root here, and root writes regardless."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from pathlib import Path

from chaos.common import PYTHON, Row, Scratch

COMMANDS = [("status",), ("enqueue", '{"command": "true"}'), ("worker", "start", "--burst")]


def run(backend: str, quick: bool, pg_admin: str) -> Row:
    row = Row("7 bad files", backend)
    row.notes.append("read-only file not checked: root writes to it regardless")
    with Scratch(backend, pg_admin) as s:
        for make, says in MAKERS:
            for command in COMMANDS:
                path = s.dir / f"{make.__name__}-{command[0]}.db"
                make(s, path)
                before = _digest(path)
                result = _cli(s, path, *command)
                row.faults += 1
                lines = result.stderr.strip().splitlines()
                what = f"{make.__name__} file, {command[0]}"
                if result.returncode == 0:
                    row.problems.append(f"{what}: exit 0")
                if len(lines) != 1 or says not in lines[0] or "Traceback" in result.stderr:
                    row.problems.append(f"{what}: error was {result.stderr.strip()[:200]!r}")
                if _digest(path) != before:
                    row.problems.append(f"{what}: the file was changed")
        row.leftovers = len(s.leftovers())
    return row


def _cli(s: Scratch, path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "queuectl", "--db", str(path), *args], input="",
                          capture_output=True, text=True, timeout=120, cwd=s.dir,
                          env=s.queue.env)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _a_queue(s: Scratch, path: Path) -> None:
    if _cli(s, path, "enqueue", '{"command": "true"}').returncode != 0:
        raise AssertionError(f"could not create a queue at {path}")


def zero_byte(s: Scratch, path: Path) -> None:
    path.write_bytes(b"")


def truncated(s: Scratch, path: Path) -> None:
    _a_queue(s, path)
    _cli(s, path, "status")  # the last connection's close checkpoints the WAL into the file
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(data[: len(data) // 3])


def foreign(s: Scratch, path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()


def not_sqlite(s: Scratch, path: Path) -> None:
    path.write_text("name,total\nacme,9.5\n")


def newer_schema(s: Scratch, path: Path) -> None:
    _a_queue(s, path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE queuectl_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


MAKERS = [
    (zero_byte, "empty file"),
    (truncated, "malformed"),
    (foreign, "not a queuectl database"),
    (not_sqlite, "not a SQLite database"),
    (newer_schema, "newer than this queuectl"),
]
