"""Shared fixtures: a fresh queue database per test on each backend, and the real CLI.

The PostgreSQL backend gets a database of its own per test (created and dropped here). Without
a reachable server its tests skip on a developer machine; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
# Child processes (the CLI, workers) import this checkout's code, not an installed copy.
os.environ["PYTHONPATH"] = str(SRC) + (os.pathsep + os.environ["PYTHONPATH"]
                                       if os.environ.get("PYTHONPATH") else "")

PG_ADMIN_URL = os.environ.get("QUEUECTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI") == "true"
BACKENDS = ["sqlite", "postgres"]


def _pg_admin():
    try:
        import psycopg
    except ImportError:
        if IN_CI:
            pytest.fail("psycopg is not installed, but CI must run the PostgreSQL tests")
        pytest.skip("psycopg not installed (pip install -e '.[postgres]')")
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable at {PG_ADMIN_URL} in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture
def pg_database():
    """A fresh, empty PostgreSQL database URL; dropped afterwards."""
    admin = _pg_admin()
    name = f"queuectl_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def sqlite_database(tmp_path):
    return str(tmp_path / "queue.db")


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """A queue database target (file path or URL) on each backend in turn."""
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    return request.getfixturevalue("pg_database")


class CLI:
    """Runs the real `queuectl` in a subprocess against one database."""

    def __init__(self, db: str, cwd: Path):
        self.db = db
        self.cwd = cwd

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "queuectl", "--db", self.db, *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=self.cwd, env={**os.environ, **(env or {})})

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        kw.setdefault("cwd", self.cwd)
        return subprocess.Popen(self.command(*args), **kw)


@pytest.fixture
def cli(db, tmp_path):
    return CLI(db, tmp_path)
