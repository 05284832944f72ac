"""--json prints one JSON document and nothing else on stdout; the built-in smoke test passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .helpers import assert_one_error_line, wait_until

STATES = {"pending", "processing", "completed", "failed", "dead"}
KEYS = {"max-retries", "backoff-base", "lease-seconds", "heartbeat-seconds", "poll-seconds",
        "max-crashes"}


@pytest.mark.timeout(60)
def test_every_json_output_is_json_only(qc, tmp_path):
    # An empty queue lists as [], not as nothing or a message.
    assert qc.json("list") == []
    assert qc.json("list", "--state", "dead") == []
    assert qc.json("dlq", "list") == []
    status = qc.json("status")
    assert STATES <= set(status["counts"]) and set(status["counts"].values()) == {0}
    assert status["workers"] == []
    assert KEYS <= set(qc.json("config", "list"))
    assert qc.json("config", "get", "max-retries") == 3
    assert qc.json("config", "set", "backoff-base", "1.5") == {"backoff-base": 1.5}
    assert qc.json("config", "get", "backoff-base") == 1.5

    enqueued = qc.json("enqueue", '[{"id": "good", "command": "true"}, '
                                  '{"id": "bad", "command": "exit 4", "max_retries": 0}]')
    assert [e["id"] for e in enqueued] == ["good", "bad"]
    qc.fast()
    started, release = tmp_path / "started", tmp_path / "release"
    workers = qc.start_workers()
    qc.wait_for_state("good", "completed", timeout=15)
    qc.wait_for_state("bad", "dead", timeout=15)
    qc.enqueue({"id": "slow", "command": f"touch {started}; "
                f"while [ ! -e {release} ]; do sleep 0.05; done"})
    wait_until(started.exists, 15, "the slow job to start")

    status = qc.json("status")
    [worker] = status["workers"]
    assert worker["current_job"] == "slow"
    assert status["counts"]["processing"] == 1
    slow = qc.show("slow")
    assert slow["state"] == "processing" and slow["worker"] == worker["id"]
    assert [j["id"] for j in qc.json("list", "--state", "processing")] == ["slow"]

    release.touch()
    qc.wait_for_state("slow", "completed", timeout=15)
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()
    assert [j["id"] for j in qc.json("list", "--state", "completed", "--limit", "1")] == ["slow"]
    assert qc.show("good")["history"][0]["outcome"] == "completed"
    [dead] = qc.json("dlq", "list")
    assert (dead["id"], dead["exit_code"]) == ("bad", 4)
    assert qc.json("dlq", "retry", "bad") == {"retried": 1, "ids": ["bad"]}
    assert qc.json("dlq", "list") == []
    assert qc.json("dlq", "purge") == {"purged": 0}
    assert_one_error_line(qc.run("list", "--state", "bogus", "--json"), 2)


@pytest.mark.timeout(120)
def test_smoke_test_passes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "queuectl", "smoke-test"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_output_larger_than_a_pipe_arrives_whole_and_a_reader_may_leave_early(qc):
    """The command leaves without the interpreter's teardown (cli.run): what it printed must
    still all arrive, a few bytes left in a buffer as much as a burst far above a pipe's
    capacity, and a reader that stops early (`| head -1`) is no error. Run with Python's own
    buffering, as a user's shell runs it (this test runner may have PYTHONUNBUFFERED set)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

    def run(*args: str, input: str = "") -> subprocess.CompletedProcess:
        done = subprocess.run(qc.cli.command(*args), input=input, capture_output=True,
                              text=True, timeout=30, cwd=qc.cli.cwd, env=env)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return done

    assert run("enqueue", '{"id": "small", "command": "true"}').stdout == "small\n"
    run("enqueue", "-", input="".join(f'{{"id": "job-{i:04}", "command": "echo {"x" * 40}"}}\n'
                                      for i in range(2000)))
    listed = json.loads(run("list", "--limit", "2001", "--json").stdout)  # about 0.5 MB
    assert len(listed) == 2001 and {job["id"] for job in listed} == {
        f"job-{i:04}" for i in range(2000)} | {"small"}
    pipeline = subprocess.run(
        ["bash", "-c", '"$@" | head -1; echo "exit ${PIPESTATUS[0]}" >&2', "-",
         *qc.cli.command("list", "--limit", "2001")],
        capture_output=True, text=True, timeout=30, cwd=qc.cli.cwd, env=env)
    assert pipeline.stdout.startswith("ID ") and pipeline.stdout.count("\n") == 1
    assert pipeline.stderr == "exit 0\n"
