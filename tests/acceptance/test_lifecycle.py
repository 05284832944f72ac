"""A job's life through the real CLI: enqueue, run, complete; fail, back off, die, retry."""

from __future__ import annotations

import json
import signal
from datetime import datetime

import pytest

from .helpers import assert_one_error_line

pytestmark = pytest.mark.timeout(60)


def _stop(workers) -> None:
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_job_completes_and_show_has_its_history(qc, tmp_path):
    qc.fast()
    assert qc.enqueue({"id": "job1", "command": "echo hello > out.txt"}) == ["job1"]
    pending = qc.show("job1")
    assert (pending["state"], pending["attempts"], pending["runs"]) == ("pending", 0, 0)
    assert pending["history"] == []

    workers = qc.start_workers()
    job = qc.wait_for_state("job1", "completed", timeout=15)
    _stop(workers)

    # The command ran in the folder it was enqueued from.
    assert (tmp_path / "out.txt").read_text() == "hello\n"
    assert job["attempts"] == 1
    assert job["runs"] == 1
    assert job["exit_code"] == 0
    assert job["last_error"] is None
    assert job["finished_at"] is not None
    [run] = job["history"]
    assert run["run"] == 1
    assert run["outcome"] == "completed"
    assert run["exit_code"] == 0
    assert run["error"] is None
    assert run["worker"]
    assert _epoch(run["started_at"]) <= _epoch(run["finished_at"])
    assert qc.counts()["completed"] == 1


def test_enqueue_from_argument_stdin_and_files_prints_the_new_ids(qc, tmp_path):
    qc.configure(("max-retries", "5"))
    generated = qc.ok("enqueue", '{"command": "true"}').stdout.split()
    assert len(generated) == 1 and generated[0]

    from_stdin = qc.ok("enqueue", "-", input='{"id": "s1", "command": "true", "max_retries": 1}')
    assert from_stdin.stdout == "s1\n"

    (tmp_path / "one.json").write_text('{"id": "f1", "command": "true"}')
    (tmp_path / "array.json").write_text(json.dumps(
        [{"id": "a1", "command": "true"}, {"command": "true", "max_retries": 0}]))
    (tmp_path / "lines.jsonl").write_text(
        '{"id": "l1", "command": "true"}\n\n{"id": "l2", "command": "echo two"}\n')
    assert qc.ok("enqueue", "--file", "one.json").stdout == "f1\n"
    array_ids = qc.ok("enqueue", "--file", str(tmp_path / "array.json")).stdout.split()
    assert len(array_ids) == 2 and array_ids[0] == "a1"
    assert qc.ok("enqueue", "--file", "lines.jsonl").stdout.split() == ["l1", "l2"]
    piped = qc.ok("enqueue", "--file", "-", input='{"id": "p1", "command": "true"}\n'
                  '{"id": "p2", "command": "true"}\n')
    assert piped.stdout.split() == ["p1", "p2"]
    flagged = qc.ok("enqueue", "--max-retries", "7", '{"id": "m7", "command": "true"}')
    assert flagged.stdout == "m7\n"

    jobs = {j["id"]: j for j in qc.jobs()}
    assert set(jobs) == {generated[0], "s1", "f1", "a1", array_ids[1], "l1", "l2", "p1", "p2",
                         "m7"}
    assert all(j["state"] == "pending" and j["attempts"] == 0 for j in jobs.values())
    assert jobs[generated[0]]["max_retries"] == 5  # the queue's max-retries
    assert jobs["s1"]["max_retries"] == 1
    assert jobs[array_ids[1]]["max_retries"] == 0
    assert jobs["m7"]["max_retries"] == 7
    assert jobs["l2"]["command"] == "echo two"


def test_failing_job_backs_off_lands_in_dlq_and_dlq_retry_runs_it_again(qc, tmp_path):
    base, max_retries = 1.5, 2  # 3 runs, waiting 1.5 s then 2.25 s
    qc.fast(("backoff-base", str(base)))
    stamps, fixed = tmp_path / "stamps", tmp_path / "fixed"
    # Each run writes when it ran, then fails until the file `fixed` exists.
    command = (f"date +%s.%N >> {stamps}; "
               f"if [ ! -e {fixed} ]; then echo broken >&2; exit 3; fi")
    qc.enqueue({"id": "flaky", "command": command, "max_retries": max_retries})
    workers = qc.start_workers()

    waiting = qc.wait_for_state("flaky", "failed", timeout=15)
    assert waiting["attempts"] == 1
    assert waiting["next_run_at"] is not None
    dead = qc.wait_for_state("flaky", "dead", timeout=20)
    _stop(workers)

    assert dead["attempts"] == max_retries + 1
    assert dead["runs"] == max_retries + 1
    assert dead["exit_code"] == 3
    assert "exit code 3" in dead["last_error"] and "broken" in dead["last_error"]
    history = dead["history"]
    assert [h["outcome"] for h in history] == ["failed"] * (max_retries + 1)
    assert [h["exit_code"] for h in history] == [3] * (max_retries + 1)

    # The delays, measured by the job itself: run n+1 starts base ** n seconds after run n
    # failed, never earlier, and not much later (a scheduled retry waits for an idle poll of
    # 0.1 s; the rest is slack for a loaded machine).
    times = [float(line) for line in stamps.read_text().split()]
    assert len(times) == max_retries + 1
    for n in range(1, len(times)):
        gap, expected = times[n] - times[n - 1], base ** n
        assert expected <= gap <= expected + 1.5, (n, gap, expected)
    # show's history says the same, to its whole-second precision.
    for n in range(1, len(history)):
        gap = _epoch(history[n]["started_at"]) - _epoch(history[n - 1]["finished_at"])
        assert base ** n - 1 <= gap <= base ** n + 2, (n, gap)

    [in_dlq] = qc.json("dlq", "list")
    assert in_dlq["id"] == "flaky"
    assert in_dlq["attempts"] == max_retries + 1
    assert in_dlq["exit_code"] == 3
    assert "exit code 3" in in_dlq["last_error"]

    fixed.touch()
    assert qc.json("dlq", "retry", "flaky") == {"retried": 1, "ids": ["flaky"]}
    again = qc.show("flaky")
    assert (again["state"], again["attempts"]) == ("pending", 0)
    assert len(again["history"]) == max_retries + 1  # the history is kept
    assert qc.json("dlq", "list") == []

    workers = qc.start_workers()
    done = qc.wait_for_state("flaky", "completed", timeout=15)
    _stop(workers)
    assert done["attempts"] == 1
    assert done["exit_code"] == 0
    assert [h["outcome"] for h in done["history"]] == ["failed"] * (max_retries + 1) + [
        "completed"]


def test_dlq_retry_all_and_purge(qc):
    qc.fast()
    qc.enqueue({"id": "bad1", "command": "exit 1", "max_retries": 0},
               {"id": "bad2", "command": "exit 2", "max_retries": 0},
               {"id": "good", "command": "true", "max_retries": 0})
    workers = qc.start_workers(2)
    for job_id in ("bad1", "bad2"):
        qc.wait_for_state(job_id, "dead", timeout=15)
    qc.wait_for_state("good", "completed", timeout=15)
    _stop(workers)
    assert sorted(d["id"] for d in qc.json("dlq", "list")) == ["bad1", "bad2"]

    # Only dead jobs can be retried; an unknown id is an operational failure. Neither changes
    # anything, even next to a valid id.
    assert_one_error_line(qc.run("dlq", "retry", "good"), 2)
    assert_one_error_line(qc.run("dlq", "retry", "bad1", "nosuch"), 1)
    assert qc.state("bad1") == "dead"

    assert qc.json("dlq", "retry", "--all")["retried"] == 2
    for job_id in ("bad1", "bad2"):
        job = qc.show(job_id)
        assert (job["state"], job["attempts"]) == ("pending", 0)
    assert qc.json("dlq", "list") == []
    assert qc.json("dlq", "retry", "--all")["retried"] == 0

    workers = qc.start_workers(2)
    for job_id in ("bad1", "bad2"):
        assert qc.wait_for_state(job_id, "dead", timeout=15)["runs"] == 2
    _stop(workers)

    assert qc.json("dlq", "purge") == {"purged": 2}
    assert qc.json("dlq", "list") == []
    assert [j["id"] for j in qc.jobs()] == ["good"]
    assert_one_error_line(qc.run("show", "bad1"), 1)
    assert qc.json("dlq", "purge") == {"purged": 0}


def test_jobs_persist_across_worker_restarts(qc, tmp_path):
    qc.fast()
    ran = tmp_path / "ran"
    workers = qc.start_workers(2)
    qc.enqueue({"id": "first", "command": f"echo first >> {ran}"})
    qc.wait_for_state("first", "completed", timeout=15)
    assert qc.ok("worker", "stop", "--timeout", "30").returncode == 0
    assert workers.wait(10) == 0, workers.log()

    qc.enqueue({"id": "second", "command": f"echo second >> {ran}"},
               {"id": "third", "command": f"echo third >> {ran}"})
    assert {j["id"]: j["state"] for j in qc.jobs()} == {
        "first": "completed", "second": "pending", "third": "pending"}

    workers = qc.start_workers()
    qc.wait_for_state("second", "completed", timeout=15)
    qc.wait_for_state("third", "completed", timeout=15)
    _stop(workers)
    assert ran.read_text().split() == ["first", "second", "third"]
    first = qc.show("first")
    assert first["state"] == "completed" and len(first["history"]) == 1
    assert qc.counts()["completed"] == 3


def test_a_job_run_by_worker_start_gets_sigpipe_as_from_a_shell(qc):
    """The worker's interpreter ignores SIGPIPE; its jobs must not: `yes | head -1` is quiet,
    and a loop writing into `head` ends (a job that inherited the ignore ran until its
    timeout)."""
    qc.fast()
    qc.enqueue({"id": "pipes", "timeout": 20,
                "command": "yes | head -1; while :; do echo more; done | head -1"})
    workers = qc.start_workers()
    job = qc.wait_for_state("pipes", "completed", timeout=15)
    _stop(workers)
    assert job["exit_code"] == 0
    assert qc.ok("logs", "pipes").stdout.splitlines()[-2:] == ["y", "more"]
