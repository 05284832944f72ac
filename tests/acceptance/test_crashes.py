"""Workers that die mid-job: nothing of the job is left running, the job is recovered without
being charged, and a job that keeps killing its worker is quarantined."""

from __future__ import annotations

import signal

import pytest

from .helpers import processes_with, wait_until, wait_until_gone

pytestmark = pytest.mark.timeout(60)


def test_sigkill_of_the_workers_kills_the_job_tree_and_the_job_is_recovered(qc, tmp_path):
    qc.fast()
    marker = qc.marker()
    ran_once = tmp_path / "ran-once"
    # The first run starts a background child and waits; the second run finishes at once.
    command = (f"if [ -e {ran_once} ]; then echo second run; exit 0; fi; touch {ran_once}; "
               f"sh -c 'sleep {marker} & sleep {marker}'")
    qc.enqueue({"id": "victim", "command": command})
    workers = qc.start_workers()
    wait_until(lambda: len(processes_with(marker)) >= 3, 15, "the job's processes")
    assert qc.state("victim") == "processing"

    workers.kill()  # SIGKILL to the supervisor and its workers: no chance to clean up

    # Each worker's guardian kills the job's whole tree once its worker is gone.
    wait_until_gone(marker, 5, "every process of the job to be gone")
    wait_until_gone(qc.db, 5, "the guardians to exit after their workers")
    # Nobody has recovered it yet: no worker runs.
    assert qc.state("victim") == "processing"

    workers = qc.start_workers()
    job = qc.wait_for_state("victim", "completed", timeout=15)
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()

    crashed, completed = job["history"]
    assert crashed["outcome"] == "crashed"
    assert "without charging" in crashed["error"]
    assert completed["outcome"] == "completed"
    assert job["attempts"] == 1  # the completed run only: the crash was not charged
    assert (job["runs"], job["crashes"]) == (2, 1)
    assert qc.counts()["processing"] == 0
    assert qc.json("status")["workers"] == []


def test_a_job_that_kills_its_worker_ends_dead_after_max_crashes(qc, tmp_path):
    qc.fast(("max-crashes", "2"))
    ran = tmp_path / "ran"
    qc.enqueue({"id": "poison", "command": "kill -9 $PPID"})
    others = [f"ok{i:02d}" for i in range(20)]
    qc.enqueue(*[{"id": job_id, "command": f"echo {job_id} >> {ran}"} for job_id in others])
    workers = qc.start_workers(2)

    poison = qc.wait_for_state("poison", "dead", timeout=30)
    wait_until(lambda: qc.counts()["completed"] == len(others), 30, "the other jobs")
    assert workers.running(), workers.log()  # the supervisor replaced the killed workers
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()

    wait_until_gone(qc.db, 5, "every worker and guardian to exit")
    assert sorted(ran.read_text().split()) == others
    assert (poison["crashes"], poison["runs"], poison["attempts"]) == (2, 2, 0)
    assert "max-crashes" in poison["last_error"]
    assert "died" in poison["last_error"]
    assert [h["outcome"] for h in poison["history"]] == ["crashed", "crashed"]
    [dead] = qc.json("dlq", "list")
    assert dead["id"] == "poison" and dead["crashes"] == 2
    assert "max-crashes" in dead["last_error"]
    assert qc.counts()["processing"] == 0


def test_a_frozen_worker_loses_its_job_to_another_and_records_nothing(qc, tmp_path):
    qc.fast()
    marker = qc.marker()
    runs, ran_once = tmp_path / "runs", tmp_path / "ran-once"
    command = (f"echo run >> {runs}; if [ -e {ran_once} ]; then exit 0; fi; touch {ran_once}; "
               f"sh -c 'sleep {marker} & sleep {marker}'")
    qc.enqueue({"id": "held", "command": command})
    frozen = qc.start_workers()
    wait_until(lambda: len(processes_with(marker)) >= 3, 15, "the job's processes")
    frozen.signal_group(signal.SIGSTOP)  # supervisor and worker stop heartbeating
    try:
        other = qc.start_workers()
        # After the lease (2 s) the other worker takes the job over: it kills what is left of
        # the first run on this host, then runs the job again.
        job = qc.wait_for_state("held", "completed", timeout=20)
        assert not processes_with(marker)
    finally:
        frozen.signal_group(signal.SIGCONT)

    # Thawed, the first worker finds its run killed and tries to record that, which its lost
    # lease forbids. A warm stop lets it finish that first, so once it exited, it has tried.
    for workers in (frozen, other):
        workers.signal(signal.SIGTERM)
        assert workers.wait(15) == 0, workers.log()
    assert runs.read_text().split() == ["run", "run"]
    assert qc.show("held") == job
    assert (job["attempts"], job["runs"], job["crashes"]) == (1, 2, 1)
    assert [h["outcome"] for h in job["history"]] == ["crashed", "completed"]
