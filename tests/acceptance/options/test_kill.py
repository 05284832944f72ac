"""Timeouts and cancels kill the job's whole process group, background children included.

The jobs to be killed start their processes through a `sleep` whose name holds a unique marker,
so /proc/*/cmdline finds each of them (and the `sh -c` that runs the job) whoever their parent
is.
"""

from __future__ import annotations

import json
import time

import pytest

from .helpers import (
    assert_refused,
    kill_all,
    marked_sleep,
    new_marker,
    processes_with,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def marker():
    mark = new_marker()
    yield mark
    kill_all([pid for pid, _ in processes_with(mark)])  # no stray sleep after a failure


def _running_with(marker: str, count: int) -> None:
    """Wait until the job's processes run. Reads only /proc, so it sees them well within
    a 1 s timeout even on a loaded machine; they exist only once the job is processing."""
    wait_until(lambda: len(processes_with(marker)) >= count, 10,
               f"{count} processes with {marker} in their command line")


def test_timed_out_job_leaves_no_process_behind_even_in_the_background(q, tmp_path, marker):
    sleep = marked_sleep(tmp_path, marker)
    job_id = q.enqueue(f"echo before; {sleep} 300 & {sleep} 301", "--timeout", "1",
                       "--max-retries", "0")
    q.start_worker()
    _running_with(marker, 2)
    job = q.wait_state(job_id, "dead", timeout=15)
    assert processes_with(marker) == []
    assert q.logs(job_id).stdout.splitlines()[0] == "before"  # a timed-out run's output is kept
    assert job["last_error"] == "timed out after 1s"
    assert job["exit_code"] == 124
    (run,) = job["history"]
    assert run["outcome"] == "timeout"
    assert 1 <= run["seconds"] < 4


def test_timeout_escalates_to_sigkill_for_children_that_ignore_sigterm(q, tmp_path, marker):
    sleep = marked_sleep(tmp_path, marker)
    job_id = q.enqueue(f"trap '' TERM; {sleep} 300 & {sleep} 301", "--timeout", "1",
                       "--max-retries", "0")
    q.start_worker()
    _running_with(marker, 2)
    job = q.wait_state(job_id, "dead", timeout=15)
    assert processes_with(marker) == []
    (run,) = job["history"]
    assert run["outcome"] == "timeout"
    assert run["seconds"] >= 2, "SIGKILL came without a grace period after SIGTERM"


def test_timeout_sends_sigterm_first_so_children_can_clean_up(q):
    child = 'sh -c \'trap "echo child got TERM; exit 0" TERM; while :; do sleep 0.1; done\''
    job_id = q.enqueue(f"{child} & echo started; sleep 300", "--timeout", "1",
                       "--max-retries", "0")
    q.start_worker()
    q.wait_state(job_id, "dead", timeout=15)
    lines = q.logs(job_id).stdout.splitlines()
    # (sh may also report the killed `sleep 0.1` as "Terminated")
    assert lines[0] == "started" and "child got TERM" in lines, lines


def test_job_timeout_config_is_the_default_and_retry_policy_applies(q):
    q.configure(("job-timeout", "1s"), ("backoff-base", "1"))
    default = q.enqueue("sleep 30", "--max-retries", "1")
    own = q.enqueue("sleep 1.5", "--timeout", "20")
    q.start_worker()
    job = q.wait_state(default, "dead", timeout=20)
    assert [r["outcome"] for r in job["history"]] == ["timeout", "timeout"]
    assert job["attempts"] == 2
    assert q.wait_state(own, "completed")["history"][0]["outcome"] == "completed"


def test_cancel_pending_job_never_runs(q, tmp_path):
    ran = tmp_path / "ran"
    job_id = q.enqueue(f"touch {ran}")
    keep = q.enqueue("true")
    result = q.ok("cancel", job_id)
    assert job_id in result.stderr and "cancelled" in result.stderr
    q.burst()
    assert not ran.exists()
    job = q.show(job_id)
    assert job["state"] == "cancelled" and job["history"] == [] and job["runs"] == 0
    assert q.state(keep) == "completed"
    assert [j["id"] for j in q.json("list", "--state", "cancelled")] == [job_id]
    assert q.json("status")["counts"]["cancelled"] == 1
    assert q.run("cancel", job_id).returncode == 1  # already cancelled


def test_cancel_running_job_kills_its_processes(q, tmp_path, marker):
    sleep = marked_sleep(tmp_path, marker)
    job_id = q.enqueue(f"{sleep} 300 & {sleep} 301")
    q.start_worker()
    _running_with(marker, 2)
    started = time.monotonic()
    result = q.ok("cancel", "--json", job_id)
    assert time.monotonic() - started < 10
    assert json.loads(result.stdout) == [{"id": job_id, "state": "cancelled"}]
    assert processes_with(marker) == []
    job = q.show(job_id)
    assert job["state"] == "cancelled"
    assert job["history"][-1]["outcome"] == "cancelled"
    assert q.json("status")["counts"]["cancelled"] == 1
    assert [j["id"] for j in q.json("list", "--state", "cancelled")] == [job_id]
    # The worker lives on and takes the next job.
    after = q.enqueue("true")
    q.wait_state(after, "completed")


def test_cancel_refuses_finished_and_unknown_jobs_and_cancels_nothing_then(q):
    done = q.enqueue("true")
    waiting = q.enqueue("true", "--delay", "1h")
    q.burst()
    assert_refused(q.run("cancel", done), 1)
    assert_refused(q.run("cancel", waiting, "no-such-job"), 1)
    assert q.state(waiting) == "pending"
    refused = q.run("cancel", waiting, done)  # the error would say nothing about `waiting`
    assert_refused(refused, 1)
    assert done in refused.stderr
    assert q.state(waiting) == "pending"
    assert q.state(done) == "completed"
