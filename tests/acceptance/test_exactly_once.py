"""Many workers in several `worker start` processes on one queue run each job exactly once."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from .helpers import wait_until

pytestmark = pytest.mark.timeout(90)

JOBS = 100
ENQUEUERS = 4


def test_two_supervisors_of_four_workers_run_every_job_exactly_once(qc, tmp_path):
    qc.fast()
    ran = tmp_path / "ran"
    ids = [f"job-{i:03d}" for i in range(JOBS)]
    batches = [ids[i::ENQUEUERS] for i in range(ENQUEUERS)]
    for number, batch in enumerate(batches):
        (tmp_path / f"jobs{number}.jsonl").write_text(
            "".join(json.dumps({"id": job_id, "command": f"echo {job_id} >> {ran}"}) + "\n"
                    for job_id in batch))
    first, second = qc.start_workers(4), qc.start_workers(4)
    wait_until(lambda: len(qc.json("status")["workers"]) == 8, 15, "8 registered workers")

    # Several enqueues at once, racing each other and the workers for the database.
    enqueuers = [qc.cli.popen("enqueue", "--file", f"jobs{number}.jsonl",
                              stdin=subprocess.DEVNULL) for number in range(ENQUEUERS)]
    for batch, enqueuer in zip(batches, enqueuers, strict=True):
        out, err = enqueuer.communicate(timeout=30)
        assert (enqueuer.returncode, out.split()) == (0, batch), err
    wait_until(lambda: qc.counts()["completed"] == JOBS, 60, "every job to complete")
    qc.ok("worker", "stop", "--timeout", "30")
    assert first.wait(10) == 0, first.log()
    assert second.wait(10) == 0, second.log()

    runs = Counter(ran.read_text().split())
    assert sorted(runs) == ids
    assert [job_id for job_id, n in runs.items() if n != 1] == []
    jobs = qc.jobs()
    assert len(jobs) == JOBS
    assert {(j["state"], j["attempts"], j["runs"]) for j in jobs} == {("completed", 1, 1)}
    # Both supervisors took part (they raced for the same jobs): each logged some job's id.
    for workers in (first, second):
        log = workers.log()
        assert any(job_id in log for job_id in ids), log
