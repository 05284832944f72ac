"""Worker.run_once(now) driven directly on a real SQLite store, running real commands.

The clock is injected: the time a worker records (and so a retry's due time) is whatever the
test says, while timeouts and heartbeats still run on the real monotonic clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from conditions import wait_until
from queuectl.models import parse_job_spec
from queuectl.pausing import PauseSwitch
from queuectl.processes import start_stamp
from queuectl.stopping import COLD, RUNNING, WARM
from queuectl.store import WorkerIdentity, open_store
from queuectl.worker import Worker, new_identity

from .common import T0, process_alive


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(sqlite_database):
    s = open_store(sqlite_database, durable=False)
    yield s
    s.close()


def enqueue(store, now=T0, **spec):
    [result] = store.enqueue([parse_job_spec(spec)], now)
    return result.id


def make_worker(store, clock):
    return Worker(store, new_identity(), clock=clock, verbose=False)


def heartbeat_at(store, worker) -> float:
    [row] = [w for w in store.live_workers(0.0) if w["id"] == worker.identity.id]  # every row
    return row["heartbeat_at"]


def step(worker, clock, now):
    clock.now = now
    return worker.run_once(now)


def test_a_job_completes(store):
    job_id = enqueue(store, command="echo hello")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    assert step(worker, clock, T0) is True
    job = store.get(job_id)
    assert (job.state, job.attempts, job.exit_code, job.runs) == ("completed", 1, 0, 1)
    assert job.finished_at == T0
    assert [a["outcome"] for a in store.attempts(job_id)] == ["completed"]
    assert step(worker, clock, T0 + 1) is False
    assert worker.jobs_done == 1


def test_the_job_runs_in_its_cwd_with_its_env(store, tmp_path):
    job_id = enqueue(store, command='printf "%s|%s" "$GREETING" "$(pwd)" > out.txt',
                     cwd=str(tmp_path), env={"GREETING": "hi there"})
    clock = Clock(T0)
    assert step(make_worker(store, clock), clock, T0)
    assert store.get(job_id).state == "completed"
    assert (tmp_path / "out.txt").read_text() == f"hi there|{tmp_path}"


def test_a_failing_job_is_retried_at_the_backoff_time_and_not_before(store):
    store.config_set("backoff-base", "2")
    job_id = enqueue(store, command="echo about to fail; echo oops >&2; exit 3", max_retries=2)
    clock = Clock(T0)
    worker = make_worker(store, clock)

    assert step(worker, clock, T0) is True
    job = store.get(job_id)
    assert (job.state, job.attempts, job.exit_code, job.run_at) == ("failed", 1, 3, T0 + 2)
    assert job.last_error == "exit code 3: oops"  # the last line of output says why

    assert step(worker, clock, T0 + 1.999) is False
    assert store.get(job_id).runs == 1
    assert step(worker, clock, T0 + 2) is True
    assert (store.get(job_id).attempts, store.get(job_id).run_at) == (2, T0 + 2 + 4)

    assert step(worker, clock, T0 + 5.999) is False
    assert step(worker, clock, T0 + 6) is True
    dead = store.get(job_id)
    assert (dead.state, dead.attempts, dead.runs) == ("dead", 3, 3)
    assert step(worker, clock, T0 + 10_000) is False


def test_a_missing_command_is_exit_127(store):
    job_id = enqueue(store, command="definitely-not-a-command-queuectl", max_retries=0)
    clock = Clock(T0)
    step(make_worker(store, clock), clock, T0)
    job = store.get(job_id)
    assert (job.state, job.exit_code) == ("dead", 127)
    assert job.last_error.startswith("exit code 127 (command not found?)")


def test_a_missing_cwd_fails_the_job_without_running_it(store, tmp_path):
    job_id = enqueue(store, command="true", cwd=str(tmp_path / "gone"), max_retries=0)
    clock = Clock(T0)
    assert step(make_worker(store, clock), clock, T0) is True
    job = store.get(job_id)
    assert (job.state, job.exit_code) == ("dead", 127)
    assert "does not exist" in job.last_error


def test_a_job_past_its_timeout_is_killed_with_its_children(store, tmp_path):
    pid_file = tmp_path / "child.pid"
    job_id = enqueue(store, command=f"sleep 60 & echo $! > {pid_file}; wait", timeout="0.5s",
                     max_retries=1)
    clock = Clock(T0)
    started = time.monotonic()
    assert step(make_worker(store, clock), clock, T0) is True
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5
    job = store.get(job_id)
    assert (job.state, job.attempts, job.exit_code) == ("failed", 1, 124)
    assert job.last_error == "timed out after 0.5s"
    assert [a["outcome"] for a in store.attempts(job_id)] == ["timeout"]
    child = int(pid_file.read_text())
    wait_until(lambda: not process_alive(child), 5, "the job's background child to die")


def test_a_job_that_loses_its_lease_is_killed_and_records_nothing(store, sqlite_database,
                                                                  tmp_path):
    """Another worker takes the job over while it runs; at the next heartbeat the first
    worker finds its token gone, kills the command and writes nothing."""
    store.config_set("heartbeat-seconds", "0.2")
    pid_file = tmp_path / "job.pid"
    job_id = enqueue(store, command=f"echo $$ > {pid_file}; exec sleep 60")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    rescuer = open_store(sqlite_database)
    real_set_process = store.set_process
    taken_over = []

    def set_process_then_lose_the_lease(job, pgid, stamp):
        ok = real_set_process(job, pgid, stamp)
        # Another worker sees the lease as expired and takes the job over (no kill here:
        # we want to see the owner notice on its own).
        taken_over.extend(rescuer.recover_lost(job.lease_expires_at + 1, rescuer.settings()))
        return ok

    store.set_process = set_process_then_lose_the_lease
    try:
        started = time.monotonic()
        assert step(worker, clock, T0) is True
        elapsed = time.monotonic() - started
    finally:
        rescuer.close()
    assert [(j.id, state) for j, state in taken_over] == [(job_id, "pending")]
    assert elapsed < 5
    job = store.get(job_id)
    assert (job.state, job.attempts, job.crashes, job.runs) == ("pending", 0, 1, 1)
    assert [a["outcome"] for a in store.attempts(job_id)] == ["crashed"]
    pid = int(pid_file.read_text())
    wait_until(lambda: not process_alive(pid), 5, "the lost job's process to die")


def test_a_result_that_arrives_after_a_take_over_is_discarded(store, sqlite_database):
    job_id = enqueue(store, command="exit 0")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    rescuer = open_store(sqlite_database)
    real_record = store.record_batch

    def lose_the_lease_then_record(*args, **kwargs):
        # The run has ended; before its result is written, another worker takes the job over.
        store.record_batch = real_record
        lease_end = store.get(job_id).lease_expires_at
        rescuer.recover_lost(lease_end + 1, rescuer.settings())
        return real_record(*args, **kwargs)

    store.record_batch = lose_the_lease_then_record
    try:
        assert step(worker, clock, T0) is True
    finally:
        rescuer.close()
    job = store.get(job_id)
    assert (job.state, job.attempts, job.runs) == ("pending", 0, 1)
    assert [a["outcome"] for a in store.attempts(job_id)] == ["crashed"]


def test_a_cold_stop_kills_the_job_and_puts_it_back(store, tmp_path):
    pid_file = tmp_path / "job.pid"
    job_id = enqueue(store, command=f"echo $$ > {pid_file}; exec sleep 60")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    real_set_process = store.set_process

    def set_process_then_stop_cold(job, pgid, stamp):
        ok = real_set_process(job, pgid, stamp)
        worker.stops.request(COLD)
        return ok

    store.set_process = set_process_then_stop_cold
    started = time.monotonic()
    assert step(worker, clock, T0) is True
    assert time.monotonic() - started < 5
    job = store.get(job_id)
    assert (job.state, job.attempts, job.runs) == ("pending", 0, 1)
    assert [a["outcome"] for a in store.attempts(job_id)] == ["released"]
    assert not process_alive(int(pid_file.read_text()))
    assert step(worker, clock, T0 + 1) is False  # a stopped worker claims nothing


def test_a_warm_stop_claims_nothing_new(store):
    job_id = enqueue(store, command="true")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    worker.stops.request(WARM)
    assert step(worker, clock, T0) is False
    assert store.get(job_id).state == "pending"


def test_worker_stop_from_the_database_is_honoured(store):
    job_id = enqueue(store, command="true")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    store.register_worker(worker.identity, T0)
    store.request_stop(T0 - 15)
    assert step(worker, clock, T0) is False
    assert worker.stops.level == WARM
    assert store.get(job_id).state == "pending"


def test_an_idle_worker_writes_its_heartbeat_every_heartbeat_seconds_not_every_maintenance(
        store):
    """Maintenance (settings, the stop flag, the recovery scan) runs every 2 s; the heartbeat is
    a write, and every write wakes each idle worker watching the queue, so it is written only
    every heartbeat-seconds (5 by default)."""
    clock = Clock(T0)
    worker = make_worker(store, clock)
    store.register_worker(worker.identity, T0 - 10)
    seen = []
    for now in (T0, T0 + 2, T0 + 4, T0 + 6, T0 + 8, T0 + 10, T0 + 12):
        assert step(worker, clock, now) is False  # nothing to run: maintenance only
        seen.append(heartbeat_at(store, worker) - T0)
    assert seen == [0, 0, 0, 6, 6, 6, 12]
    store.request_stop(T0)  # and the reads of every maintenance still happen
    assert step(worker, clock, T0 + 14) is False
    assert worker.stops.level == WARM


def test_a_wall_clock_stepped_back_does_not_stall_maintenance(store):
    """Maintenance runs on the worker's clock, the wall clock. Stepped back ten minutes (NTP, a
    restored VM), it used to skip maintenance, and with it the heartbeat, until the clock had
    caught up: ten minutes in which the worker looked dead and recovered nobody's jobs."""
    clock = Clock(T0)
    worker = make_worker(store, clock)
    store.register_worker(worker.identity, T0 - 10)
    assert step(worker, clock, T0) is False
    back = T0 - 600
    assert step(worker, clock, back) is False
    assert heartbeat_at(store, worker) == back
    assert step(worker, clock, back + 1) is False  # and then on its usual schedule again
    assert heartbeat_at(store, worker) == back


def test_maintenance_recovers_the_job_of_a_dead_worker_on_this_host_and_kills_its_leftovers(
        store):
    """A worker on this host died (SIGKILL) mid-job: its job's processes still run. Another
    worker notices the dead pid at once (no lease wait), kills the leftovers, re-queues."""
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    dead = WorkerIdentity(id=f"{host}:{gone.pid}:dead", host=host, pid=gone.pid,
                          pid_started="boot:1")
    store.register_worker(dead, T0)
    job_id = enqueue(store, command="sleep 60")
    job = store.claim(dead, T0, 15)
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert store.set_process(job, leftover.pid, start_stamp(leftover.pid))
        clock = Clock(T0 + 1)
        worker = make_worker(store, clock)
        worker.maintain(T0 + 1, force=True)  # well inside the dead worker's lease
        assert leftover.wait(timeout=10) == -15  # SIGTERM to the job's group
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
    recovered = store.get(job_id)
    assert (recovered.state, recovered.crashes, recovered.attempts) == ("pending", 1, 0)
    assert store.stop_requested(dead.id) is None  # the dead worker's row is gone


def test_a_live_worker_on_this_host_is_left_alone(store):
    host = socket.gethostname()
    me = os.getpid()
    alive = WorkerIdentity(id=f"{host}:{me}:live", host=host, pid=me, pid_started=start_stamp(me))
    store.register_worker(alive, T0)
    job_id = enqueue(store, command="sleep 60")
    store.claim(alive, T0, 15)
    clock = Clock(T0 + 1)
    make_worker(store, clock).maintain(T0 + 1, force=True)
    assert store.get(job_id).state == "processing"


def test_the_next_job_is_claimed_with_the_result_and_given_back_on_a_warm_stop(store):
    first = enqueue(store, command="true")
    second = enqueue(store, command="true")
    clock = Clock(T0)
    worker = make_worker(store, clock)
    store.register_worker(worker.identity, T0)
    assert step(worker, clock, T0) is True
    # The commit that recorded the first job also claimed the second for this worker.
    assert store.get(first).state == "completed"
    claimed = store.get(second)
    assert (claimed.state, claimed.worker_id, claimed.runs) == ("processing",
                                                                 worker.identity.id, 1)

    worker.stops.request(WARM)  # SIGTERM now: the claimed job must not start here
    assert step(worker, clock, T0 + 1) is False
    back = store.get(second)
    assert (back.state, back.runs, back.worker_id) == ("pending", 0, None)
    assert store.attempts(second) == []


def pausable_worker(store) -> tuple[Clock, PauseSwitch, Worker]:
    clock, pause = Clock(T0), PauseSwitch()
    worker = Worker(store, new_identity(), clock=clock, pause=pause, verbose=False)
    store.register_worker(worker.identity, T0)
    return clock, pause, worker


def test_a_paused_worker_claims_nothing_gives_back_its_chained_job_and_resumes(store):
    """Ctrl-Z (pausing.py): the job claimed with the last result does not start either; it
    goes back as if never claimed, and is taken once the pause is over."""
    first, second, third = (enqueue(store, command="true") for _ in range(3))
    clock, pause, worker = pausable_worker(store)
    assert step(worker, clock, T0) is True
    assert store.get(second).state == "processing"  # chained with the first one's result

    pause.set(True)
    assert step(worker, clock, T0 + 1) is False
    back = store.get(second)
    assert (back.state, back.runs, back.worker_id) == ("pending", 0, None)
    assert step(worker, clock, T0 + 2) is False
    assert store.get(third).state == "pending"

    pause.set(False)
    assert step(worker, clock, T0 + 3) is True
    assert step(worker, clock, T0 + 4) is True
    assert [store.get(j).state for j in (first, second, third)] == ["completed"] * 3
    assert worker.stops.level == RUNNING


def test_a_job_that_ends_while_paused_is_recorded_without_claiming_the_next(store):
    running, waiting = enqueue(store, command="true"), enqueue(store, command="true")
    _, pause, worker = pausable_worker(store)
    job = store.claim(worker.identity, T0, 15)
    assert job is not None and job.id == running
    pause.set(True)  # while the job runs
    worker.execute(job)
    assert store.get(running).state == "completed"
    assert (store.get(waiting).state, list(worker._ahead)) == ("pending", [])


def test_a_lost_run_whose_group_never_reached_the_database_is_found_by_its_environment(
        store, tmp_path):
    """A worker frozen or killed in a job's first moments has not written the job's process
    group yet; a worker on the same host still stops what is left of that run."""
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = WorkerIdentity(id=f"{host}:{gone.pid}:dead", host=host, pid=gone.pid,
                          pid_started="boot:1")
    store.register_worker(dead, T0)
    job_id = enqueue(store, command="sleep 60")
    job = store.claim(dead, T0, 15)
    assert job.pgid is None
    env = {**os.environ, "QUEUECTL_JOB_ID": job_id, "QUEUECTL_RUN": str(job.runs)}
    leftover = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True,
                                env=env)
    other_run = subprocess.Popen(["sleep", "60"], start_new_session=True,
                                 env={**env, "QUEUECTL_RUN": str(job.runs + 1)})
    try:
        wait_until(lambda: os.path.exists(f"/proc/{leftover.pid}"), 5, "the leftover")
        make_worker(store, Clock(T0 + 1)).maintain(T0 + 1, force=True)
        assert leftover.wait(timeout=10) == -15
        assert other_run.poll() is None  # another run's processes are not this run's
    finally:
        for proc in (leftover, other_run):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert store.get(job_id).state == "pending"


def test_a_result_the_database_keeps_refusing_is_reported_again_until_a_stop(
        store, monkeypatch, capfd):
    """Past its lease a worker keeps trying to record a result (it is fenced by its token, so
    it lands unless another worker took the job over); while the database refuses, the worker
    says so again every STILL_TRYING_EVERY_SECONDS, and a warm stop ends the wait."""
    import threading

    import queuectl.worker as worker_module

    monkeypatch.setattr(worker_module, "STILL_TRYING_EVERY_SECONDS", 0.3)
    store.config_set("heartbeat-seconds", "0.5")
    store.config_set("lease-seconds", "2")
    job_id = enqueue(store, command="true")
    worker = Worker(store, new_identity(), verbose=True)
    job = store.claim(worker.identity, T0, 2.0)
    said: list[str] = []

    def stop_after_two_reminders() -> None:
        deadline = time.monotonic() + 30
        while "".join(said).count("still trying to record the result of job") < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            said.append(capfd.readouterr().err)
        worker.stops.request(WARM)

    stopper = threading.Thread(target=stop_after_two_reminders)
    store.db.conn.execute("PRAGMA query_only = 1")  # every write refused, as on a full disk
    stopper.start()
    worker.execute(job)  # returns once the stop came: it gives up, the lease being over
    stopper.join(timeout=10)
    store.db.conn.execute("PRAGMA query_only = 0")
    said.append(capfd.readouterr().err)
    log = "".join(said)
    assert log.count("still trying to record the result of job") >= 2, log
    assert "attempt to write a readonly database" in log
    assert "it will be recovered and run again" in log
    assert "no longer ours" not in log  # it was ours; it gave up (it used to say both)
    assert store.get(job_id).state == "processing"  # nothing recorded: recovery takes it
