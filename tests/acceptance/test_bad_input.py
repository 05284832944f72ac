"""Bad usage and bad input: exit 2 (1 for an unknown job), one line on stderr, no traceback,
nothing on stdout, and nothing written: no database is created, an existing one is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from queuectl.models import LONGEST_ARG_BYTES

from .helpers import assert_one_error_line, database_is_untouched

pytestmark = pytest.mark.timeout(120)


@dataclass
class Case:
    name: str
    args: tuple[str, ...]
    stdin: str = ""
    files: dict[str, str] = field(default_factory=dict)
    code: int = 2


def enqueue(name: str, job_text: str) -> Case:
    return Case(name, ("enqueue", job_text))


GOOD = '{"command": "true"}'

# Refused only after looking at all of the input, or at the other settings: where a store is
# open, these are the ones that could leave a partial write behind.
LATE = [
    enqueue("one bad job in an array", f'[{GOOD}, {{"command": 5}}]'),
    enqueue("duplicate id within an array",
            '[{"id": "twin", "command": "true"}, {"id": "twin", "command": "true"}]'),
    Case("bad line in JSON Lines", ("enqueue", "--file", "jobs.jsonl"),
         files={"jobs.jsonl": f'{GOOD}\n{{"command": \n{GOOD}\n'}),
    Case("duplicate id in JSON Lines", ("enqueue", "--file", "jobs.jsonl"),
         files={"jobs.jsonl": '{"id": "twin", "command": "true"}\n'
                              '{"id": "twin", "command": "false"}\n'}),
    Case("heartbeat over half the lease", ("config", "set", "heartbeat-seconds", "10")),
]

# Refused before anything exists: none of these may create a database.
ANYWHERE = LATE + [
    enqueue("malformed JSON", '{"command": "true"'),
    enqueue("not an object", '"echo hi"'),
    enqueue("array of non-objects", "[1, 2]"),
    enqueue("empty array", "[]"),
    enqueue("missing command", '{"id": "x"}'),
    enqueue("null command", '{"command": null}'),
    enqueue("number command", '{"command": 42}'),
    enqueue("list command", '{"command": ["echo", "hi"]}'),
    enqueue("blank command", '{"command": "  "}'),
    enqueue("string max_retries", '{"command": "true", "max_retries": "3"}'),
    enqueue("float max_retries", '{"command": "true", "max_retries": 1.5}'),
    enqueue("boolean max_retries", '{"command": "true", "max_retries": true}'),
    enqueue("negative max_retries", '{"command": "true", "max_retries": -1}'),
    enqueue("number id", '{"command": "true", "id": 7}'),
    enqueue("id with a space", '{"command": "true", "id": "a b"}'),
    enqueue("misspelt field", '{"command": "true", "retries": 3}'),
    Case("negative --max-retries", ("enqueue", "--max-retries", "-1", GOOD)),
    Case("word --max-retries", ("enqueue", "--max-retries", "x", GOOD)),
    Case("empty --cwd", ("enqueue", "--cwd", "", GOOD)),
    enqueue("id ending in a newline", '{"command": "true", "id": "job1\\n"}'),
    enqueue("lone surrogate in command", '{"command": "echo \\ud800"}'),
    # One argument or environment string is at most 131,071 bytes when a job starts: longer
    # ones were accepted, then failed every run ("Argument list too long") until the DLQ.
    # On stdin, since the JSON would be too long for enqueue's own command line.
    Case("command over the kernel's limit", ("enqueue", "-"),
         stdin=json.dumps({"command": "x" * LONGEST_ARG_BYTES + "x"})),
    Case("command over the limit in bytes, not characters", ("enqueue", "-"),
         stdin=json.dumps({"command": "é" * (LONGEST_ARG_BYTES // 2 + 1)})),
    Case("env entry over the kernel's limit", ("enqueue", "-"),
         stdin=json.dumps({"command": "true", "env": {"A": "x" * LONGEST_ARG_BYTES}})),
    Case("malformed JSON on stdin", ("enqueue", "-"), stdin='{"command":'),
    Case("empty stdin", ("enqueue", "-"), stdin=""),
    Case("no job at all", ("enqueue",), stdin=""),
    Case("missing file", ("enqueue", "--file", "missing.json")),
    Case("argument and --file", ("enqueue", GOOD, "--file", "jobs.json"),
         files={"jobs.json": GOOD}),
    Case("--count 0", ("worker", "start", "--count", "0")),
    Case("--count -2", ("worker", "start", "--count", "-2")),
    Case("--count two", ("worker", "start", "--count", "two")),
    Case("negative stop timeout", ("worker", "stop", "--timeout", "-1")),
    Case("unknown state", ("list", "--state", "bogus")),
    Case("unknown state, --json", ("list", "--state", "bogus", "--json")),
    Case("--limit 0", ("list", "--limit", "0")),
    Case("config set unknown key", ("config", "set", "bogus", "1")),
    Case("config get unknown key", ("config", "get", "bogus")),
    Case("config unset unknown key", ("config", "unset", "bogus")),
    Case("negative max-retries", ("config", "set", "max-retries", "-1")),
    Case("float max-retries", ("config", "set", "max-retries", "1.5")),
    Case("word backoff-base", ("config", "set", "backoff-base", "fast")),
    Case("backoff-base below 1", ("config", "set", "backoff-base", "0.5")),
    Case("lease-seconds too short", ("config", "set", "lease-seconds", "1")),
    Case("max-crashes 0", ("config", "set", "max-crashes", "0")),
    Case("dlq retry without ids", ("dlq", "retry")),
    Case("dlq retry ids and --all", ("dlq", "retry", "x", "--all")),
    Case("show without id", ("show",)),
    Case("unknown command", ("frobnicate",)),
    Case("no command", ()),
]

# Refused because of what the queue holds ("existing" is a pending job there).
WITH_DATA = [
    enqueue("duplicate of a stored id", '{"id": "existing", "command": "true"}'),
    enqueue("array with a stored id", '[{"id": "new1", "command": "true"}, '
                                      '{"id": "existing", "command": "true"}]'),
    Case("dlq retry of a pending job", ("dlq", "retry", "existing")),
    Case("show unknown id", ("show", "nosuch"), code=1),
    Case("dlq retry unknown id", ("dlq", "retry", "nosuch"), code=1),
    Case("heartbeat over half the stored lease", ("config", "set", "heartbeat-seconds", "3")),
]


def _run(qc, tmp_path, case: Case):
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    return qc.run(*case.args, input=case.stdin)


@pytest.mark.parametrize("case", ANYWHERE, ids=[c.name for c in ANYWHERE])
def test_bad_input_creates_no_database(qc, tmp_path, case):
    assert database_is_untouched(qc.db)
    result = _run(qc, tmp_path, case)
    assert_one_error_line(result, case.code)
    assert database_is_untouched(qc.db), "a refused command created the database"


BAD_TARGETS = {
    "empty": "",
    "blank": "   ",
    "another database's URL": "mysql://root@127.0.0.1/test",
    "SQLite's in-memory name": ":memory:",
    "SQLite's in-memory name as a URL": "sqlite:///:memory:",
}


@pytest.mark.parametrize("target", BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
@pytest.mark.parametrize("command", [("status",), ("enqueue", GOOD), ("worker", "start")])
def test_a_bad_db_is_refused_and_nothing_is_written(tmp_path, target, command):
    """`--db` and `QUEUECTL_DB` alike. Nothing may appear in the folder (':memory:' became a
    queue file of that name there) nor in the default queue's place (an empty --db, as a
    script passes for an unset variable, used the default queue: the job went where no
    worker of the script's looked, and `worker start` served a queue nobody meant)."""
    folder, home = tmp_path / "here", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    for given, env_value in ((["--db", target], None), ([], target)):
        run_env = {k: v for k, v in env.items() if k != "QUEUECTL_DB"}
        if env_value is not None:
            run_env["QUEUECTL_DB"] = env_value
        result = subprocess.run([sys.executable, "-m", "queuectl", *given, *command],
                                input="", capture_output=True, text=True, cwd=folder,
                                env=run_env, timeout=60)
        assert_one_error_line(result, 2)
        assert list(folder.iterdir()) == list(home.iterdir()) == [], result.stderr


def test_bad_input_leaves_an_existing_database_unchanged(qc, tmp_path):
    # The other cases of ANYWHERE are refused before the database is opened (the test above
    # shows it), so only these can change a database that exists.
    qc.enqueue({"id": "existing", "command": "true"})
    qc.configure(("heartbeat-seconds", "2"), ("lease-seconds", "5"), ("max-retries", "4"))
    before = qc.snapshot()
    problems = []
    for case in LATE + WITH_DATA:
        result = _run(qc, tmp_path, case)
        try:
            assert_one_error_line(result, case.code)
        except AssertionError as exc:
            problems.append(f"{case.name}: {exc}")
        after = qc.snapshot()
        if after != before:
            problems.append(f"{case.name}: changed the queue:\n{json.dumps(after, indent=1)}")
            before = after
    assert not problems, "\n".join(problems)


def test_the_longest_command_and_environment_string_that_fit_run(qc):
    """The limit is exact: a command of 131,071 bytes and an env entry whose NAME=value is
    as long both start (the refusals above are not a margin)."""
    filler = LONGEST_ARG_BYTES - len(": ; echo fits $#")
    value = "y" * (LONGEST_ARG_BYTES - len("BIG="))
    spec = {"id": "longest", "command": ": " + "x" * filler + "; echo fits $#",
            "env": {"BIG": value}}
    assert len(spec["command"].encode()) == LONGEST_ARG_BYTES
    qc.ok("enqueue", "-", input=json.dumps(spec))
    workers = qc.start_workers(1, "--burst")
    assert workers.wait(30) == 0, workers.log()
    assert qc.state("longest") == "completed"
    assert qc.run("logs", "longest").stdout.strip() == "fits 0"


NOT_UTF8 = b'{"command": "true"}\n{"command": "echo caf\xe9"}\n'  # Latin-1, line 2


@pytest.mark.parametrize("how", ["--file", "stdin", "argument"])
def test_jobs_that_are_not_utf8_are_refused_saying_where(qc, tmp_path, how):
    """An --file used to end in a traceback (UnicodeDecodeError), and standard input or an
    argument in "'command' holds a lone surrogate", which is not what was wrong."""
    data = NOT_UTF8 if how != "argument" else NOT_UTF8.splitlines()[1]
    (tmp_path / "jobs.jsonl").write_bytes(data)
    args = {"--file": ["--file", str(tmp_path / "jobs.jsonl")], "stdin": ["-"],
            "argument": [os.fsdecode(data)]}[how]
    result = subprocess.run([*qc.cli.command("enqueue", *args)], input=data if how == "stdin"
                            else b"", capture_output=True, timeout=60, cwd=tmp_path)
    decoded = subprocess.CompletedProcess(result.args, result.returncode,
                                          result.stdout.decode(), result.stderr.decode())
    assert_one_error_line(decoded, 2)
    assert "not UTF-8" in decoded.stderr and "0xe9 on line" in decoded.stderr, decoded.stderr
    assert database_is_untouched(qc.db)


def test_a_byte_order_mark_before_the_jobs_is_allowed(qc, tmp_path):
    """What Windows editors and PowerShell write at the start of a UTF-8 file."""
    (tmp_path / "jobs.jsonl").write_bytes(b'\xef\xbb\xbf{"id": "a", "command": "true"}\r\n'
                                          b'{"id": "b", "command": "echo \xc3\xa9"}\r\n')
    assert qc.ok("enqueue", "--file", str(tmp_path / "jobs.jsonl")).stdout.split() == ["a", "b"]
    assert qc.show("b")["command"] == "echo é"


def test_enqueue_from_a_closed_standard_input(qc, tmp_path):
    """`queuectl enqueue - <&-` ended in a traceback. (A directory as standard input stops
    Python itself before any of our code runs, so it cannot be checked here.)"""
    result = subprocess.run(qc.cli.command("enqueue", "-"), capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: os.close(0))
    assert_one_error_line(result, 2)
    assert "standard input, which is closed" in result.stderr
    assert database_is_untouched(qc.db)
