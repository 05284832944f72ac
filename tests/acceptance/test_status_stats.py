"""`status` and `stats` through the real CLI, on a history written through the store with
timestamps a few minutes in the past, so every figure is known in advance."""

from __future__ import annotations

import json
import signal
import time

import pytest

from queuectl.models import NewJob
from queuectl.store import WorkerIdentity, open_store

W = WorkerIdentity(id="host-t:1:tttt", host="host-t", pid=1)


def _history(db, now):
    """Two runs of 'build' 30 s and 4 min ago, and a failure 10 min ago; one job pending."""
    store = open_store(db)
    try:
        for job_id, queue, command, start, seconds, ok in [
            ("b1", "build", "make", now - 240, 4.0, True),
            ("b2", "build", "make", now - 30, 2.0, True),
            ("x1", "default", "false", now - 600, 1.0, False),
        ]:
            store.enqueue([NewJob(id=job_id, command=command, queue=queue, max_retries=0)],
                          start - 3)
            job = store.claim(W, start, 15.0)
            assert job.id == job_id
            if ok:
                assert store.complete(job, start + seconds)
            else:
                assert store.fail(job, start + seconds, store.settings(), 1, "no") == "dead"
        store.enqueue([NewJob(id="p1", command="later", queue="build", delay=3600.0)], now)
    finally:
        store.close()


def test_status_recount_repairs_drifted_counts_and_keeps_stdout_json(cli):
    _history(cli.db, time.time())
    store = open_store(cli.db)
    store.db.run_script("UPDATE job_counts SET completed = 40, pending = -3")  # drifted
    store.close()
    assert json.loads(cli("status", "--json").stdout)["counts"]["completed"] == 80  # 2 queues
    done = cli("status", "--recount", "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)["counts"]  # stdout holds the JSON only
    assert (counts["completed"], counts["dead"], counts["pending"]) == (2, 1, 1)
    assert done.stderr.strip() == "recounted: 4 job(s)"


def test_status_json_figures(cli):
    _history(cli.db, time.time())
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["counts"]["completed"] == 2 and data["counts"]["dead"] == 1
    assert data["queues"]["build"]["completed"] == 2
    assert data["queues"]["build"]["pending"] == 1
    assert data["queues"]["default"]["dead"] == 1
    assert data["throughput_per_minute"] == {"1m": 1.0, "5m": 0.4, "15m": 0.2}
    last = data["last_15m"]
    assert (last["runs"], last["failed"], last["failure_rate"]) == (3, 1, 0.3333)
    assert (last["wait_p50"], last["wait_p95"]) == (3.0, 3.0)
    assert (last["run_p50"], last["run_p95"]) == (2.0, 4.0)
    assert data["workers"] == []


def test_status_table(cli):
    _history(cli.db, time.time())
    done = cli("status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("QUEUE"))
    assert header.split() == ["QUEUE", "PENDING", "COMPLETED", "DEAD", "TOTAL"]
    assert next(line for line in lines if line.startswith("build")).split() == [
        "build", "1", "2", "3"]
    assert "finished runs/min: 1m 1  5m 0.4  15m 0.2" in lines
    assert any(line.startswith("last 15m: 3 runs, failure rate 33.3%") for line in lines)


def test_stats_json_per_queue_and_command(cli):
    _history(cli.db, time.time())
    data = json.loads(cli("stats", "--since", "1h", "--json").stdout)
    assert data["total"]["runs"] == 3
    assert data["queues"]["build"]["per_minute"] == round(2 / 60, 3)
    assert data["commands"]["make"]["run_p95"] == 4.0
    assert data["commands"]["false"]["failure_rate"] == 1.0
    # --since bounds the history read: 5 minutes hold only the two builds
    short = json.loads(cli("stats", "--since", "5m", "--json").stdout)
    assert list(short["commands"]) == ["make"]
    assert short["total"]["failure_rate"] == 0.0


def test_stats_table_and_bad_since(cli):
    _history(cli.db, time.time())
    done = cli("stats")
    assert done.returncode == 0, done.stderr
    assert "3 finished runs" in done.stdout
    assert any(line.split()[:2] == ["make", "2"] for line in done.stdout.splitlines())
    bad = cli("stats", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_status_on_a_missing_queue_creates_nothing(cli, tmp_path):
    if cli.db.startswith("postgresql"):
        pytest.skip("a file-only property")
    assert cli("status", "--json").returncode == 0
    assert cli("stats", "--json").returncode == 0
    assert not (tmp_path / "queue.db").exists()


def test_status_watch_refreshes_and_ctrl_c_exits_0(cli):
    _history(cli.db, time.time())
    proc = cli.popen("status", "--watch", "--interval", "0.2")
    try:
        frames = 0
        deadline = time.monotonic() + 30
        while frames < 2:  # two frames: it redraws, not merely draws once
            assert time.monotonic() < deadline, "status --watch drew fewer than 2 frames"
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            frames += line.startswith("database:")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "\033[" not in out  # not a terminal: no escape codes
    assert "interrupted" not in err
