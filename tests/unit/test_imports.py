"""Each CLI call is a new process: importing the CLI must stay cheap and need no extra."""

import json
import subprocess
import sys

OPTIONAL = ["psycopg", "rich", "flask", "click", "prometheus_client", "starlette", "uvicorn",
            "jinja2", "playwright"]
# The SQLite core is standard library, but not even sqlite3 is needed to parse arguments;
# commands import the store when they run.
NOT_AT_IMPORT = [*OPTIONAL, "sqlite3", "subprocess", "queuectl.store", "queuectl.api"]


def _modules_after(code: str, cwd) -> set[str]:
    # cwd elsewhere: from the checkout's root, `import queuectl` would find the queuectl.py shim.
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def _modules_after_an_enqueue(tmp_path) -> set[str]:
    """The modules loaded by the most frequent call, `enqueue JSON`, into a new queue."""
    db = tmp_path / "q.db"
    return _modules_after(
        "import queuectl.cli\n"
        f"assert queuectl.cli.main(['--db', {str(db)!r}, 'enqueue', '{{\"command\": \"true\"}}'])"
        " == 0",
        tmp_path,
    )


def test_importing_the_cli_loads_no_optional_or_heavy_module(tmp_path):
    modules = _modules_after("import queuectl.cli", tmp_path)
    assert "queuectl.cli" in modules
    assert [name for name in NOT_AT_IMPORT if _loaded(modules, name)] == []


def test_building_the_parser_loads_nothing_more(tmp_path):
    modules = _modules_after("import queuectl.cli\nqueuectl.cli.build_parser()", tmp_path)
    assert [name for name in NOT_AT_IMPORT if _loaded(modules, name)] == []


def test_an_sqlite_command_loads_no_optional_module(tmp_path):
    db = tmp_path / "q.db"
    modules = _modules_after(
        "import queuectl.cli\n"
        f"assert queuectl.cli.main(['--db', {str(db)!r}, 'status', '--json']) == 0",
        tmp_path,
    )
    assert _loaded(modules, "sqlite3")  # the check above can see a module being loaded
    assert [name for name in OPTIONAL if _loaded(modules, name)] == []


def test_the_package_import_is_lazy(tmp_path):
    modules = _modules_after("import queuectl", tmp_path)
    assert not _loaded(modules, "queuectl.api")
    assert not _loaded(modules, "sqlite3")


def test_a_plain_enqueue_builds_no_argparse_parser(tmp_path):
    """The most frequent call, `enqueue JSON`, is read without argparse (and the gettext and
    locale it loads): building the parser cost more than the rest of the call."""
    modules = _modules_after_an_enqueue(tmp_path)
    assert _loaded(modules, "sqlite3")
    assert [name for name in ["argparse", "gettext", "locale", *OPTIONAL]
            if _loaded(modules, name)] == []


def test_a_plain_enqueue_loads_nothing_only_workers_or_bulk_inserts_need(tmp_path):
    """Modules only a worker (the write-lock turns), a PostgreSQL worker's journal (base64), a
    bulk enqueue (multi-row INSERTs) or an optional codec need: with the multi-row work a
    one-job enqueue no longer does, 2.5 to 3 ms of every `enqueue` call (DECISIONS.md §35)."""
    modules = _modules_after_an_enqueue(tmp_path)
    assert _loaded(modules, "queuectl.store.sqlite")
    assert [name for name in ["base64", "fcntl", "queuectl.store.multirow",
                              "queuectl.store.turns", "encodings.utf_8_sig"]
            if _loaded(modules, name)] == []
