"""An idle worker wakes up when another process commits a job, long before its poll interval,
on every backend (SQLite: PRAGMA data_version; PostgreSQL: LISTEN/NOTIFY)."""

from __future__ import annotations

import json
import time

from queuectl.models import NewJob
from queuectl.store import open_store
from queuectl.worker import Worker, new_identity

POLL = "30"  # far longer than any wait below: only a wake-up can make these tests pass


def test_a_job_committed_right_after_an_empty_claim_wakes_the_idle_worker(db):
    store, other = open_store(db), open_store(db)
    try:
        store.config_set("poll-seconds", POLL)
        worker = Worker(store, new_identity(), verbose=False)
        store.db.changed()  # start watching (PostgreSQL: LISTEN) before the claim
        assert worker.run_once(time.time()) is False  # nothing to do
        # The commit lands between the empty claim and the idle wait: it must not be lost.
        other.enqueue([NewJob(id="late", command="true")], time.time())
        started = time.monotonic()
        worker._idle_wait()
        assert time.monotonic() - started < 2.0
        assert worker.run_once(time.time()) is True
    finally:
        store.close()
        other.close()


def test_a_running_worker_picks_up_each_new_job_without_waiting_for_its_poll(cli):
    assert cli("config", "set", "poll-seconds", POLL).returncode == 0
    workers = cli.popen("worker", "start", "--count", "1")
    try:
        for number in range(3):
            job_id = f"job{number}"
            enqueued = cli("enqueue", json.dumps({"id": job_id, "command": "true"}))
            assert enqueued.returncode == 0, enqueued.stderr
            deadline = time.monotonic() + 10
            while json.loads(cli("show", job_id, "--json").stdout)["state"] != "completed":
                assert time.monotonic() < deadline, f"{job_id} was not picked up"
                time.sleep(0.05)
    finally:
        workers.terminate()
        out, err = workers.communicate(timeout=30)
    assert workers.returncode == 0, err


def test_a_job_committed_while_the_worker_prepares_its_claim_is_claimed_at_once(db):
    """A commit landing after the worker read its clock but before it noted the database's
    version makes no later wake; the claim must still see that job as due."""
    store, other = open_store(db), open_store(db)
    try:
        store.config_set("poll-seconds", POLL)
        worker = Worker(store, new_identity(), verbose=False)
        worker.maintain(time.time(), force=True)  # so run_once does no maintenance now
        read_clock_at = time.time()
        watch = store.db.change_fd
        enqueued = []

        def change_fd_after_a_commit():
            if not enqueued:  # the enqueuer's clock is later than the worker's reading
                enqueued.append(other.enqueue([NewJob(id="racer", command="true")], time.time()))
            return watch()

        store.db.change_fd = change_fd_after_a_commit
        assert worker.run_once(read_clock_at) is True, "the due job was left for poll-seconds"
        assert enqueued and store.get("racer").state == "completed"
    finally:
        store.close()
        other.close()
