"""wait, worker start --burst, purge, retention and backoff-jitter through the real CLI."""

from __future__ import annotations

import json
import time

import pytest

from .helpers import assert_refused, iso_to_epoch, wait_until

pytestmark = pytest.mark.timeout(60)


def test_wait_exit_codes(q):
    slow = q.enqueue("sleep 1")
    quick = q.enqueue("true")
    dead = q.enqueue("exit 3", "--max-retries", "0")
    later = q.enqueue("true", "--delay", "1h")
    q.start_worker()

    result = q.run("wait", slow, quick)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{slow} completed", f"{quick} completed"]
    assert q.state(slow) == "completed"

    result = q.run("wait", quick, dead, "--json")
    assert result.returncode == 1, result.stderr
    assert q.json("wait", quick) == [{"id": quick, "state": "completed"}]

    started = time.monotonic()
    result = q.run("wait", quick, later, "--timeout", "0.5")
    assert result.returncode == 124, result.stderr
    assert 0.5 <= time.monotonic() - started < 5
    assert "timed out" in result.stderr

    q.ok("cancel", later)
    assert q.run("wait", later).returncode == 1
    assert_refused(q.run("wait", quick, "no-such-job"), 1)
    assert_refused(q.run("wait", quick, "--timeout", "soon"), 2)


def test_burst_worker_exits_when_no_job_is_ready(q):
    started = time.monotonic()
    q.burst()  # nothing queued at all
    assert time.monotonic() - started < 10
    q.configure(("backoff-base", "100"))
    done = [q.enqueue("sleep 0.2") for _ in range(4)]
    later = q.enqueue("true", "--delay", "1h")
    retry_later = q.enqueue("exit 1", "--max-retries", "1")
    q.burst("--count", "2")
    assert {q.state(j) for j in done} == {"completed"}
    assert q.state(later) == "pending"
    assert q.state(retry_later) == "failed"  # ran once; its retry is not due yet
    assert q.json("status")["workers"] == []


def _burst_then_age(q, seconds: float = 1.0) -> float:
    """Run every ready job with a burst worker, then wait until they all finished more than
    `seconds` ago. Returns a time after which none of them finished."""
    q.burst()
    finished = time.time()
    wait_until(lambda: time.time() > finished + seconds + 0.05, seconds + 5,
               f"the jobs to be over {seconds:g}s old")
    return finished


def test_purge_deletes_finished_jobs_by_state_and_age(q):
    old_done = q.enqueue("echo old")
    dead = q.enqueue("exit 3", "--max-retries", "0")
    cancelled = q.enqueue("true", "--delay", "1h")
    pending = q.enqueue("true", "--delay", "1h")
    q.ok("cancel", cancelled)
    old_finished = _burst_then_age(q)
    assert q.json("purge", "--state", "completed", "--older-than", "7d")["purged"] == 0
    new_done = q.enqueue("echo new")  # finishes over 1 s after old_finished
    q.burst()

    # The cut half a second after old_finished, however long the burst took on a busy machine.
    age = f"{time.time() - old_finished - 0.5:.3f}s"
    assert q.json("purge", "--state", "completed", "--older-than", age) == {
        "purged": 1, "states": ["completed"]}
    assert set(q.states()) == {dead, cancelled, pending, new_done}
    assert_refused(q.run("logs", old_done), 1)
    assert_refused(q.run("show", old_done), 1)

    q.ok("purge")  # default: completed and cancelled, whatever their age
    assert set(q.states()) == {dead, pending}
    assert q.json("purge", "--state", "dead")["purged"] == 1
    assert q.states() == {pending: "pending"}
    for bad in (["--state", "pending"], ["--state", "processing"], ["--older-than", "soon"]):
        assert_refused(q.run("purge", *bad), 2)
    assert q.states() == {pending: "pending"}


def test_retention_is_applied_by_a_worker_when_it_starts(q):
    """A worker applies retention at its first maintenance and then at most every 60 s, so a
    fresh worker deletes jobs that aged past retention before it started."""
    q.configure(("retention", "1s"))
    done = q.enqueue("true")
    dead = q.enqueue("exit 3", "--max-retries", "0")
    cancelled = q.enqueue("true", "--delay", "1h")
    q.ok("cancel", cancelled)
    _burst_then_age(q)
    assert q.states() == {done: "completed", dead: "dead", cancelled: "cancelled"}

    fresh = q.enqueue("true")
    worker = q.burst()
    # Old completed and cancelled jobs are gone; dead jobs are kept (they wait for a person);
    # the job this worker just ran is too young.
    assert q.states() == {dead: "dead", fresh: "completed"}
    assert "retention" in worker.log()


def test_retention_off_by_default_keeps_finished_jobs(q):
    assert q.json("config", "get", "retention") == 0
    done = q.enqueue("true")
    _burst_then_age(q)
    q.burst()
    assert q.states() == {done: "completed"}


def _retry_delays(q, count: int) -> list[float]:
    """Enqueue `count` jobs that fail once, run them, and return each one's retry delay."""
    batch = json.dumps([{"command": "exit 1", "max_retries": 1}] * count)
    ids = q.ok("enqueue", batch).stdout.split()
    q.burst()
    jobs = [j for j in q.json("list", "--state", "failed") if j["id"] in ids]
    assert len(jobs) == count, jobs
    q.ok("cancel", *ids)
    return [iso_to_epoch(j["next_run_at"]) - iso_to_epoch(j["updated_at"]) for j in jobs]


def test_backoff_jitter_is_off_by_default_and_spreads_retries_when_set(q):
    assert q.json("config", "get", "backoff-jitter") == 0
    q.configure(("backoff-base", "100"))
    exact = _retry_delays(q, 8)
    assert all(99 <= d <= 101 for d in exact), exact  # whole seconds: 100 +- 1

    q.configure(("backoff-jitter", "0.5"))
    spread = _retry_delays(q, 8)
    assert all(49 <= d <= 151 for d in spread), spread
    # 8 draws from [50, 150] all within 6 s of each other: about 1 in 10^8.
    assert max(spread) - min(spread) > 6, spread
    assert_refused(q.run("config", "set", "backoff-jitter", "1.5"), 2)
    assert_refused(q.run("config", "set", "backoff-jitter", "-0.1"), 2)
