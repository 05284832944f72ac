"""Batches (DECISIONS.md 30): a SQLite worker runs short jobs several to a commit, holding
their results in its journal. Whatever kills it, no job runs twice and no batch-mate is charged
for a crash it did not cause. On PostgreSQL (one job per commit) the same must hold."""

from __future__ import annotations

import signal

import pytest

from .helpers import wait_until, wait_until_gone

pytestmark = pytest.mark.timeout(90)


def appending(job_id: str, ran) -> dict:
    return {"id": job_id, "command": f"echo {job_id} >> {ran}"}


def ran_once_each(ran, expected: list[str]) -> None:
    lines = ran.read_text().split()
    assert sorted(lines) == sorted(expected), "some job ran twice or never"


def test_a_job_that_kills_its_worker_mid_batch_costs_its_batch_mates_nothing(qc, tmp_path):
    qc.fast(("max-crashes", "2"))
    ran = tmp_path / "ran"
    before = [f"a{i:02d}" for i in range(10)]
    after = [f"b{i:02d}" for i in range(20)]
    # One worker: its batches grow 1, 2, 4, 8, so the poison (the 11th job) is in a batch with
    # held results before it and claimed jobs after it.
    qc.enqueue(*[appending(j, ran) for j in before], {"id": "poison", "command": "kill -9 $PPID"},
               *[appending(j, ran) for j in after])
    workers = qc.start_workers(1)
    qc.wait_for_state("poison", "dead", timeout=40)
    wait_until(lambda: qc.counts()["completed"] == len(before) + len(after), 40, "the others")
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()
    wait_until_gone(qc.db, 5, "every worker and guardian to exit")

    ran_once_each(ran, before + after)
    for job in qc.jobs():
        if job["id"] != "poison":
            assert (job["state"], job["runs"], job["crashes"], job["attempts"]) == (
                "completed", 1, 0, 1), job
    poison = qc.show("poison")
    assert (poison["crashes"], poison["runs"]) == (2, 2)


def test_killing_every_queuectl_process_mid_batch_loses_no_result(qc, tmp_path):
    qc.fast()
    ran, killed = tmp_path / "ran", tmp_path / "killed"
    workers = qc.start_workers(1)
    wait_until(lambda: qc.json("status")["workers"], 15, "the worker to register")
    # The killer takes out the supervisor and its worker at once (their process group; the
    # guardian lives in a session of its own and ends with its worker), the first time only.
    killer = (f"if [ ! -e {killed} ]; then touch {killed}; "
              f"kill -s KILL -- -{workers.pid}; sleep 5; fi; echo killer >> {ran}")
    before = [f"a{i:02d}" for i in range(10)]
    after = [f"b{i:02d}" for i in range(10)]
    qc.enqueue(*[appending(j, ran) for j in before], {"id": "killer", "command": killer},
               *[appending(j, ran) for j in after])
    assert workers.wait(30) == -signal.SIGKILL
    wait_until_gone(qc.db, 10, "the guardian to exit after its worker")
    assert qc.counts()["processing"] > 0  # left as the kill found them

    workers = qc.start_workers(1)
    wait_until(lambda: qc.counts()["completed"] == len(before) + len(after) + 1, 40,
               "every job to complete")
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()

    ran_once_each(ran, before + after + ["killer"])
    for job in qc.jobs():
        expected_crashes = 1 if job["id"] == "killer" else 0
        assert (job["runs"], job["crashes"], job["attempts"]) == (
            1 + expected_crashes, expected_crashes, 1), job


def test_a_job_that_turns_out_long_gives_its_batch_back_at_once(qc, tmp_path):
    # A lease far longer than the wait below: what is given back is given back by the worker,
    # not recovered once its lease ran out.
    qc.fast(("lease-seconds", "60"), ("heartbeat-seconds", "10"))
    marker = qc.marker()
    before = [{"id": f"a{i:02d}", "command": "true"} for i in range(12)]
    after = [{"id": f"b{i:02d}", "command": "true"} for i in range(6)]
    qc.enqueue(*before, {"id": "long", "command": f"sleep 6 # {marker}"}, *after)
    workers = qc.start_workers(1)
    qc.wait_for_state("long", "processing", timeout=15)
    # Within its first cancel check (0.25 s) the worker records what it held and gives back
    # what it claimed ahead, so they wait as pending, not as if running.
    wait_until(lambda: qc.counts()["processing"] == 1 and qc.counts()["completed"] == 12,
               5, "only the long job to be running")
    assert qc.state("long") == "processing"
    assert {qc.state(job["id"]) for job in after} == {"pending"}
    assert {job["runs"] for job in qc.jobs("pending")} == {0}  # given back, not charged
    workers.signal(signal.SIGTERM)  # warm: the long job finishes first
    assert workers.wait(20) == 0, workers.log()
    assert qc.state("long") == "completed"
