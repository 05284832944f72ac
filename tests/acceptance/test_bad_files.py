"""A --db that is not a usable queue: a clear one-line error, a non-zero exit, and the file
byte for byte as it was (checked for a zero-byte, a truncated, a foreign, a non-SQLite and a
newer-schema file; a read-only one cannot be shown as root, who writes to it regardless)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def queuectl(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "queuectl", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_queue(path: Path) -> None:
    assert queuectl(path, "enqueue", '{"command": "true"}').returncode == 0


def zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    a_queue(path)
    assert queuectl(path, "status").returncode == 0
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(data[: len(data) // 3])


def foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.commit()
    conn.close()


def not_sqlite(path: Path) -> None:
    path.write_text("name,total\nacme,9.5\n")


def newer_schema(path: Path) -> None:
    a_queue(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE queuectl_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("make, says", [
    (zero_byte, "empty file"),
    (truncated, "malformed"),
    (foreign, "not a queuectl database"),
    (not_sqlite, "not a SQLite database"),
    (newer_schema, "newer than this queuectl"),
])
@pytest.mark.parametrize("command", [("status",), ("enqueue", '{"command": "true"}'),
                                     ("worker", "start", "--burst")])
def test_a_bad_file_is_refused_and_left_as_it_was(tmp_path, make, says, command):
    path = tmp_path / "queue.db"
    make(path)
    before = digest(path)
    result = queuectl(path, *command)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert digest(path) == before
