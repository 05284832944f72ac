"""Job fields through the real CLI: validation, priority, run_at/--delay, queue, cwd, env,
unique_key."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import pytest

from .helpers import assert_refused, iso_to_epoch, wait_until

pytestmark = pytest.mark.timeout(60)

JOB = '{"command": "true"}'

BAD_FLAGS = [
    ["--timeout", "abc"],
    ["--timeout", "0"],
    ["--timeout", "-5"],
    ["--timeout", "5 parsecs"],
    ["--priority", "high"],
    ["--priority", "1.5"],
    ["--delay", "soon"],
    ["--delay", "-1s"],
    ["--run-at", "tomorrow"],
    ["--run-at", "2030-13-45T99:00:00Z"],
    ["--delay", "5m", "--run-at", "2030-01-01T00:00:00Z"],
    ["--queue", "two words"],
    ["--queue", "a,b"],
    ["--env", "NOVALUE"],
    ["--env", "=x"],
    ["--env", "1BAD=x"],
    ["--unique-key", ""],
    ["--max-retries", "-1"],
]

BAD_SPECS = [
    {"timeout": "abc"},
    {"timeout": -1},
    {"timeout": 0},
    {"timeout": True},
    {"timeout": [30]},
    {"priority": "high"},
    {"priority": 1.5},
    {"run_at": "next week"},
    {"run_at": 1893456000},
    {"delay": "x"},
    {"queue": "a b"},
    {"queue": 5},
    {"cwd": "relative/dir"},
    {"cwd": 7},
    {"env": {"A": 1}},
    {"env": ["A=1"]},
    {"env": {"BAD-NAME": "x"}},
    {"unique_key": ""},
    {"unique_key": 5},
]


def test_bad_field_values_exit_2_with_one_line_and_write_nothing(q):
    wrong = []
    for flags in BAD_FLAGS:
        result = q.run("enqueue", *flags, JOB)
        try:
            assert_refused(result, 2)
        except AssertionError as exc:
            wrong.append(f"flags {flags}: {exc}")
    for fields in BAD_SPECS:
        result = q.run("enqueue", json.dumps({"command": "true", **fields}))
        try:
            assert_refused(result, 2)
        except AssertionError as exc:
            wrong.append(f"spec {fields}: {exc}")
    # One bad job in a batch refuses the whole batch.
    batch = json.dumps([{"command": "true"}, {"command": "true", "timeout": "never"}])
    result = q.run("enqueue", batch)
    try:
        assert_refused(result, 2)
        assert "#2" in result.stderr
    except AssertionError as exc:
        wrong.append(f"batch: {exc}")
    assert not wrong, "\n".join(wrong)
    assert q.json("list") == []


def test_fields_are_stored_as_given_by_flags_and_json(q, tmp_path):
    flagged = q.enqueue("true", "--timeout", "5m", "--priority", "-3", "--queue", "q1",
                        "--env", "A=1", "--unique-key", "k1", "--cwd", str(tmp_path))
    spec = q.enqueue("true", timeout="30s", priority=7, queue="q2", env={"B": "2"},
                     unique_key="k2", cwd=str(tmp_path))
    seconds = q.enqueue("true", timeout=90)
    f, s = q.show(flagged), q.show(spec)
    assert (f["timeout"], f["priority"], f["queue"], f["env"], f["unique_key"], f["cwd"]) == (
        300, -3, "q1", {"A": "1"}, "k1", str(tmp_path))
    assert (s["timeout"], s["priority"], s["queue"], s["env"], s["unique_key"], s["cwd"]) == (
        30, 7, "q2", {"B": "2"}, "k2", str(tmp_path))
    assert q.show(seconds)["timeout"] == 90
    plain = q.show(q.enqueue("true"))
    assert (plain["priority"], plain["queue"], plain["timeout"], plain["env"]) == (
        0, "default", None, {})


def test_priority_higher_first_then_fifo_within_a_priority(q, tmp_path):
    order = tmp_path / "order.txt"
    wanted = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5), ("f", -1), ("g", 10),
              ("h", 0)]
    for name, priority in wanted:
        command = f"echo {name} >> {order}"
        if name in "bdf":  # half of them through the JSON field, half through the flag
            q.enqueue(command, id=name, priority=priority)
        else:
            q.enqueue(command, "--priority", str(priority), id=name)
    # Not due yet: its priority must not hold back the jobs that are.
    q.enqueue(f"echo z >> {order}", "--priority", "100", "--delay", "1h", id="z")
    q.burst()  # one worker, started after every job is queued
    assert order.read_text().split() == ["d", "g", "b", "e", "a", "c", "h", "f"]
    assert q.states() == {**{name: "completed" for name, _ in wanted}, "z": "pending"}


def test_delayed_jobs_wait_until_due_then_start_promptly(q, tmp_path):
    q.ok("config", "unset", "poll-seconds")  # the default of 1 s: due jobs start within ~1.5 s
    q.start_worker()
    by_delay, by_time = tmp_path / "delay.txt", tmp_path / "run_at.txt"
    before = time.time()
    delayed = q.enqueue(f"date +%s.%N > {by_delay}", "--delay", "2s")
    after_first = time.time()
    due_at = datetime.fromtimestamp(time.time() + 2.5, UTC).isoformat()  # with microseconds
    timed = q.enqueue(f"date +%s.%N > {by_time}", run_at=due_at)
    # Until they are due, a running, idle worker leaves both alone.
    while time.time() < before + 1.8:
        assert q.states() == {delayed: "pending", timed: "pending"}
        assert not by_delay.exists() and not by_time.exists()
        time.sleep(0.2)
    wait_until(lambda: by_delay.exists() and by_time.exists(), 8, "both delayed jobs to run")
    started_delayed = float(wait_until(by_delay.read_text, 2, "the date"))
    started_timed = float(wait_until(by_time.read_text, 2, "the date"))
    assert before + 2 <= started_delayed <= after_first + 2 + 1.5
    due = iso_to_epoch(due_at)
    assert due <= started_timed <= due + 1.5


def test_delay_forms_set_next_run_at(q):
    now = time.time()
    for text, seconds in [("30s", 30), ("5m", 300), ("2h", 7200)]:
        job = q.show(q.enqueue("true", "--delay", text))
        assert job["state"] == "pending"
        # next_run_at is in whole seconds
        assert now + seconds - 1 <= iso_to_epoch(job["next_run_at"]) <= time.time() + seconds
    spec = q.show(q.enqueue("true", delay="5m"))
    assert iso_to_epoch(spec["next_run_at"]) >= now + 299


def test_a_worker_serves_only_its_queues(q, tmp_path):
    ran = tmp_path / "ran.txt"

    def job(name: str, queue: str | None) -> str:
        flags = ("--queue", queue) if queue else ()
        return q.enqueue(f"echo {name} >> {ran}", *flags, id=name)

    job("other1", "c")
    job("plain1", None)  # the queue named 'default'
    job("a1", "a")
    job("b1", "b")
    q.start_worker("--queue", "a,b")
    q.wait_state("a1", "completed")
    q.wait_state("b1", "completed")
    # Queued while that worker idles: its own queue's job runs, the others' never do.
    job("other2", "c")
    job("a2", "a")
    q.wait_state("a2", "completed")
    assert q.states() == {"other1": "pending", "plain1": "pending", "a1": "completed",
                          "b1": "completed", "other2": "pending", "a2": "completed"}
    assert sorted(ran.read_text().split()) == ["a1", "a2", "b1"]
    assert [j["id"] for j in q.json("list", "--queue", "c")] == ["other2", "other1"]

    q.burst("--queue", "default")
    assert q.state("plain1") == "completed"
    assert q.state("other1") == "pending"
    assert_refused(q.run("worker", "start", "--burst", "--queue", "no good"), 2)


def test_cwd_defaults_to_where_enqueue_ran_and_a_missing_one_fails_clearly(q, tmp_path):
    here = tmp_path / "enqueued-here"
    (here / "sub").mkdir(parents=True)
    default = q.enqueue("pwd > pwd.txt", cwd=here)
    relative = q.enqueue("pwd > pwd.txt", "--cwd", "sub", cwd=here)
    missing_dir = tmp_path / "never-existed"
    missing = q.enqueue("echo ran > ran.txt", "--cwd", str(missing_dir), "--max-retries", "0")
    removed_dir = tmp_path / "removed-later"
    removed_dir.mkdir()
    removed = q.enqueue("echo ran > ran.txt", "--max-retries", "0", cwd=removed_dir)
    removed_dir.rmdir()
    assert q.show(default)["cwd"] == str(here)
    assert q.show(relative)["cwd"] == str(here / "sub")

    q.burst()  # runs from tmp_path, not from where the jobs were enqueued
    assert (here / "pwd.txt").read_text().strip() == str(here)
    assert (here / "sub" / "pwd.txt").read_text().strip() == str(here / "sub")
    for job_id, folder in [(missing, missing_dir), (removed, removed_dir)]:
        job = q.show(job_id)
        assert job["state"] == "dead", job
        assert "working directory" in job["last_error"] and str(folder) in job["last_error"]
        assert job["history"][-1]["error"] == job["last_error"]
    assert not (tmp_path / "ran.txt").exists()


def test_env_adds_variables_to_the_inherited_environment(q, tmp_path):
    out_flags, out_json = tmp_path / "flags.txt", tmp_path / "json.txt"
    show = '"$FOO|$EQ|$SPACED|$FROM_JSON|${PATH:+has-path}"'
    q.enqueue(f"printf '%s' {show} > {out_flags}", "--env", "FOO=bar", "--env", "EQ=a=b",
              "--env", "SPACED=hello world")
    q.enqueue(f"printf '%s' {show} > {out_json}", env={"FROM_JSON": "j", "FOO": "x"})
    q.burst()
    assert out_flags.read_text() == "bar|a=b|hello world||has-path"
    assert out_json.read_text() == "x|||j|has-path"


def _enqueue_with_key(q, key: str, *extra: str) -> subprocess.CompletedProcess:
    return q.ok("enqueue", "--unique-key", key, *extra, '{"command": "sleep 0.1"}')


def test_unique_key_under_concurrent_enqueues_adds_one_job(q):
    procs = [q.popen("enqueue", "--unique-key", "nightly", '{"command": "true"}')
             for _ in range(20)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _, _ in results] == [0] * 20, results
    ids = {out.strip() for _, out, _ in results}
    assert len(ids) == 1, results
    (job_id,) = ids
    told = [err for _, _, err in results if err]
    assert len(told) == 19, results
    assert all(job_id in err and "nightly" in err for err in told), told
    assert [j["id"] for j in q.json("list")] == [job_id]


def _enqueue_json(q, *args: str) -> dict:
    """`enqueue --json` of one job: accepts an object or a one-element list of it."""
    out = q.json("enqueue", *args)
    if isinstance(out, list):
        assert len(out) == 1, out
        out = out[0]
    return out


def test_unique_key_blocks_only_while_a_job_is_live(q):
    q.configure(("backoff-base", "100"))
    first = _enqueue_json(q, "--unique-key", "k", '{"command": "exit 1", "max_retries": 1}')
    assert first["duplicate"] is False
    again = _enqueue_json(q, "--unique-key", "k", '{"command": "true"}')
    assert again == {"id": first["id"], "duplicate": True}
    via_spec = _enqueue_json(q, '{"command": "true", "unique_key": "k"}')
    assert via_spec == {"id": first["id"], "duplicate": True}

    q.burst()  # fails once; the retry is 100 s away, so it stays failed
    assert q.state(first["id"]) == "failed"
    assert _enqueue_json(q, "--unique-key", "k", JOB)["duplicate"] is True
    q.ok("cancel", first["id"])
    fresh = _enqueue_json(q, "--unique-key", "k", JOB)
    assert fresh["duplicate"] is False and fresh["id"] != first["id"]

    q.burst()  # the new job completes: the key is free again
    assert q.state(fresh["id"]) == "completed"
    third = _enqueue_json(q, "--unique-key", "k", JOB)
    assert third["duplicate"] is False
    assert len(q.json("list")) == 3


def test_unique_key_blocks_while_processing(q, tmp_path):
    started = tmp_path / "started"
    job_id = q.enqueue(f"touch {started}; sleep 30", "--unique-key", "busy")
    q.start_worker()
    wait_until(started.exists, 10, "the job to start")
    assert q.state(job_id) == "processing"
    assert _enqueue_json(q, "--unique-key", "busy", JOB) == {"id": job_id, "duplicate": True}
    human = q.run("enqueue", "--unique-key", "busy", JOB)
    assert human.returncode == 0 and human.stdout.strip() == job_id
    assert job_id in human.stderr


def test_dlq_retry_never_makes_a_second_live_job_with_a_unique_key(q):
    dead_a = q.enqueue("exit 1", "--unique-key", "k", "--max-retries", "0")
    q.burst()
    dead_b = q.enqueue("exit 1", "--unique-key", "k", "--max-retries", "0")
    unkeyed = q.enqueue("exit 1", "--max-retries", "0")
    other_key = q.enqueue("exit 1", "--unique-key", "other", "--max-retries", "0")
    q.burst()
    live = _enqueue_json(q, "--unique-key", "k", "--delay", "1h", JOB)
    assert live["duplicate"] is False  # dead jobs do not hold their key

    refused = q.run("dlq", "retry", dead_a)
    assert_refused(refused, 1)
    assert live["id"] in refused.stderr
    assert q.json("dlq", "retry", "--all") == {  # all but the two holding "k", named
        "retried": 2, "ids": None, "held": [dead_a, dead_b]}
    assert q.states() == {dead_a: "dead", dead_b: "dead", unkeyed: "pending",
                          other_key: "pending", live["id"]: "pending"}

    said = q.run("dlq", "retry", "--all")  # nothing to retry; the two are still named
    assert said.returncode == 0
    assert f"2 job(s) stay dead because a live job holds their unique_key: {dead_a}, " \
        f"{dead_b}" in said.stderr

    q.ok("cancel", live["id"])  # the key is free: one of the two dead jobs may take it
    retried = q.json("dlq", "retry", "--all")
    assert retried["retried"] == 1
    states = q.states()
    assert sorted([states[dead_a], states[dead_b]]) == ["dead", "pending"]
    still_dead = dead_a if states[dead_a] == "dead" else dead_b
    assert retried["held"] == [still_dead]  # the other one took the key
