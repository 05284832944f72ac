"""Stopping workers: one signal (warm), two signals (cold), and `worker stop` from elsewhere."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import termios

import pytest

from .helpers import children_of, is_running, processes_with, wait_until, wait_until_gone

pytestmark = pytest.mark.timeout(60)

# How the stop signals reach the workers: `kill PID` on the supervisor, or a terminal's Ctrl-C,
# which signals every process of the foreground group (supervisor and workers alike).
SENDERS = {
    "SIGTERM to the supervisor": lambda workers: workers.signal(signal.SIGTERM),
    "SIGINT to the process group": lambda workers: workers.signal_group(signal.SIGINT),
}
# A terminal's hang-up: the shell passes SIGHUP on to its jobs' process groups, and the kernel
# sends it to the foreground group when the session's leader exits. Only ever a warm stop.
WARM_SENDERS = {
    **SENDERS,
    "SIGHUP to the process group": lambda workers: workers.signal_group(signal.SIGHUP),
    # What `pkill`, `kill -TERM -PGID` and systemd's default stop send.
    "SIGTERM to the process group": lambda workers: workers.signal_group(signal.SIGTERM),
}


@pytest.mark.parametrize("send", WARM_SENDERS.values(), ids=WARM_SENDERS.keys())
def test_one_signal_lets_the_running_job_finish_and_claims_nothing_more(qc, tmp_path, send):
    qc.fast()
    started, release, done = tmp_path / "started", tmp_path / "release", tmp_path / "done"
    qc.enqueue({"id": "running", "command": f"touch {started}; "
                f"while [ ! -e {release} ]; do sleep 0.05; done; echo ok > {done}"})
    workers = qc.start_workers()
    wait_until(started.exists, 15, "the job to start")
    qc.enqueue({"id": "waiting", "command": "true"})

    send(workers)
    wait_until(lambda: "stopping" in workers.log(), 5, "the signal to be acknowledged")
    # Whoever watches from elsewhere sees why the worker takes nothing more.
    wait_until(lambda: [w["stopping"] for w in qc.json("status")["workers"]] == [True], 5,
               "status to show the worker stopping")
    assert workers.running()
    release.touch()
    assert workers.wait(15) == 0, workers.log()

    assert done.read_text() == "ok\n"
    job = qc.show("running")
    assert (job["state"], job["attempts"], job["exit_code"]) == ("completed", 1, 0)
    waiting = qc.show("waiting")
    assert (waiting["state"], waiting["runs"]) == ("pending", 0)
    assert qc.json("status")["workers"] == []


@pytest.mark.parametrize("send", SENDERS.values(), ids=SENDERS.keys())
def test_two_signals_kill_the_job_tree_and_put_it_back_uncharged(qc, tmp_path, send):
    qc.fast(("backoff-base", "1"))  # the first, failing, run is retried after 1 s
    marker = qc.marker()
    failed_once, started = tmp_path / "failed-once", tmp_path / "started"
    # Run 1 fails (so one attempt is charged); run 2 starts a background child and waits;
    # run 3 succeeds at once.
    command = (f"if [ ! -e {failed_once} ]; then touch {failed_once}; exit 1; fi; "
               f"if [ -e {started} ]; then exit 0; fi; "
               f"touch {started}; sh -c 'sleep {marker} & sleep {marker}'")
    qc.enqueue({"id": "stuck", "command": command, "max_retries": 3})
    workers = qc.start_workers()
    wait_until(started.exists, 15, "the second run to start")
    wait_until(lambda: len(processes_with(marker)) >= 3, 5, "the job's processes")
    assert qc.show("stuck")["attempts"] == 1

    send(workers)
    wait_until(lambda: "stopping" in workers.log(), 5, "the first signal to be acknowledged")
    assert workers.running()
    send(workers)
    code = workers.wait(15)
    assert code != 0, workers.log()

    wait_until_gone(marker, 5, "every process of the job to be gone")
    job = qc.show("stuck")
    assert job["state"] == "pending"
    assert job["attempts"] == 1  # unchanged: a cold stop charges nothing
    assert job["runs"] == 2
    assert [h["outcome"] for h in job["history"]] == ["failed", "released"]
    assert qc.counts()["processing"] == 0
    assert qc.json("status")["workers"] == []

    # The next worker runs it again.
    workers = qc.start_workers()
    done = qc.wait_for_state("stuck", "completed", timeout=15)
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()
    assert done["attempts"] == 2
    assert [h["outcome"] for h in done["history"]] == ["failed", "released", "completed"]


def test_worker_stop_stops_every_supervisor_after_its_running_jobs(qc, tmp_path):
    # Default timings on purpose: a busy worker then runs its periodic maintenance (which also
    # reads the stop flag) only every 2 s, and must still start no job once asked to stop.
    qc.ok("worker", "stop")  # none running: nothing to do, and not an error
    first, second = qc.start_workers(2), qc.start_workers(2)
    wait_until(lambda: len(qc.json("status")["workers"]) == 4, 15, "4 registered workers")
    release = tmp_path / "release"
    ids = [f"long{i}" for i in range(4)]
    qc.enqueue(*[{"id": job_id, "command": f"touch {tmp_path / job_id}; "
                                           f"while [ ! -e {release} ]; do sleep 0.05; done"}
                 for job_id in ids])
    wait_until(lambda: all((tmp_path / job_id).exists() for job_id in ids), 15,
               "every worker to run a job")
    qc.enqueue({"id": "later", "command": "true"})

    stopper = qc.cli.popen("worker", "stop", "--timeout", "30", stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: [w["stopping"] for w in qc.json("status")["workers"]] == [True] * 4,
                   15, "every worker to be asked to stop")
        assert stopper.poll() is None  # it waits for the running jobs
        release.touch()
        out, err = stopper.communicate(timeout=30)
    finally:
        if stopper.poll() is None:
            stopper.kill()
            stopper.wait()
    assert stopper.returncode == 0, err
    # It returned only once the running jobs were done and every worker had left.
    assert [qc.state(job_id) for job_id in ids] == ["completed"] * 4
    assert qc.json("status")["workers"] == []
    assert first.wait(10) == 0, first.log()
    assert second.wait(10) == 0, second.log()
    later = qc.show("later")
    assert (later["state"], later["runs"]) == ("pending", 0)


def test_worker_stop_counts_idle_workers_that_leave_at_once(qc):
    """Idle workers hear the stop at once (they watch for commits) and may be gone before a
    count taken after it: `worker stop` said "no running workers on this database" while it
    had just stopped them. The count now comes from the request itself."""
    qc.fast()
    pools = [qc.start_workers(2) for _ in range(2)]
    wait_until(lambda: len(qc.json("status")["workers"]) == 4, 15, "4 registered workers")
    for _ in range(3):  # a race: give the old count every chance to lose it
        result = qc.ok("worker", "stop")
        assert "asked 4 worker(s) to stop" in result.stderr, result.stderr
        assert "all workers stopped" in result.stderr, result.stderr
        for pool in pools:
            assert pool.wait(15) == 0, pool.log()
        pools = [qc.start_workers(2) for _ in range(2)]
        wait_until(lambda: len(qc.json("status")["workers"]) == 4, 15, "4 registered workers")


def _running_job(qc, tmp_path) -> tuple:
    """A job that runs until released, and the files that say where it is. Its marker gets it
    killed when the test ends, should a failure leave it waiting for a release."""
    started, release, done = tmp_path / "started", tmp_path / "release", tmp_path / "done"
    qc.enqueue({"id": "running", "command": f": {qc.marker()}; touch {started}; "
                f"while [ ! -e {release} ]; do sleep 0.05; done; echo ok > {done}"})
    return started, release, done


def _finished_once_uncharged(qc, done, workers_gone: bool = True) -> None:
    """The running job finished once, charged one attempt and no crash; `workers_gone`: and
    every worker has left (False while they still run)."""
    assert done.read_text() == "ok\n"
    job = qc.show("running")
    assert (job["state"], job["attempts"], job["runs"], job["crashes"]) == ("completed", 1, 1, 0)
    if workers_gone:
        assert qc.json("status")["workers"] == []


def test_hang_ups_never_add_up_to_a_cold_stop(qc, tmp_path):
    """A hang-up can arrive more than once (the kernel and the shell both send it); nobody
    asked for the running job to be killed, so it still finishes."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    workers = qc.start_workers(2)
    wait_until(started.exists, 15, "the job to start")
    workers.signal_group(signal.SIGHUP)
    wait_until(lambda: "hung up" in workers.log(), 5, "the hang-up to be heard")
    workers.signal_group(signal.SIGHUP)
    workers.signal(signal.SIGHUP)
    assert workers.running()
    release.touch()
    assert workers.wait(15) == 0, workers.log()
    _finished_once_uncharged(qc, done)


def _take_as_controlling_terminal() -> None:
    """In the child, after setsid: its standard input, a terminal, becomes its terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_closing_the_terminal_lets_the_running_job_finish(qc, tmp_path):
    """`worker start` on a real terminal that goes away (a window closed, ssh dropped): the
    hang-up stops the workers warmly, and writing their log to a terminal that is gone does
    not stop them either. Before, the hang-up's default action killed them mid-job."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    controller, terminal = os.openpty()
    try:
        workers = qc.start_workers(2, stdin=terminal, stdout=terminal, stderr=terminal,
                                   preexec_fn=_take_as_controlling_terminal)
    finally:
        os.close(terminal)
    wait_until(started.exists, 15, "the job to start")
    os.close(controller)  # the hang-up: the kernel signals the terminal's session
    release.touch()
    # No --burst: the workers exit only because the hang-up stopped them.
    assert workers.wait(15) == 0
    _finished_once_uncharged(qc, done)


def _ignore_hang_ups() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_under_nohup_a_hang_up_changes_nothing(qc, tmp_path):
    """`nohup queuectl worker start`: hang-ups were asked to be ignored, so they are."""
    qc.fast()
    workers = qc.start_workers(1, preexec_fn=_ignore_hang_ups)
    qc.enqueue({"id": "before", "command": "true"})
    qc.wait_for_state("before", "completed", timeout=15)
    workers.signal_group(signal.SIGHUP)
    qc.enqueue({"id": "after", "command": "true"})
    qc.wait_for_state("after", "completed", timeout=15)
    assert workers.running()
    assert "hung up" not in workers.log()
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()


def test_a_supervisor_killed_outright_takes_its_workers_with_it_warmly(qc, tmp_path):
    """SIGKILL of `worker start` alone (the OOM killer, `kill -9`, a crash of its own) used to
    leave its workers running as orphans: the prompt came back while they kept claiming jobs,
    nobody restarted them, and Ctrl-C no longer reached them. Now each stops warmly: the idle
    one at once, the busy one once its job is done (not killed, not charged)."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    workers = qc.start_workers(2)
    wait_until(started.exists, 15, "the job to start")
    pids = wait_until(lambda: len(c := children_of(workers.pid)) == 2 and c, 15, "both workers")
    workers.kill_supervisor()
    qc.enqueue({"id": "waiting", "command": "true"})
    wait_until(lambda: sum(map(is_running, pids)) == 1, 15, "the idle worker to exit")
    release.touch()
    wait_until(lambda: not any(map(is_running, pids)), 15, "the busy worker to exit")
    _finished_once_uncharged(qc, done)
    assert qc.show("waiting")["runs"] == 0


def test_one_sigterm_that_reaches_a_worker_after_its_forward_is_still_warm(qc, tmp_path):
    """SIGTERM to every process at once (`pkill`, `kill -TERM -PGID`, systemd) reaches a worker
    twice: directly, and forwarded by the supervisor. When the forward came first, the worker
    counted the direct one as a second signal and killed its running job (a cold stop; Python
    runs SIGUSR1's handler before SIGTERM's when both are pending). Here the order is forced."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    workers = qc.start_workers(1)
    wait_until(started.exists, 15, "the job to start")
    (worker,) = children_of(workers.pid)
    workers.signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in workers.log(), 5, "the supervisor to forward the stop")
    os.kill(worker, signal.SIGTERM)
    os.kill(worker, signal.SIGINT)
    release.touch()
    assert workers.wait(15) == 0, workers.log()
    _finished_once_uncharged(qc, done)


@pytest.mark.parametrize("how", ["worker stop", "SIGTERM"])
def test_a_stop_is_said_once_however_long_the_running_job_takes(qc, tmp_path, how):
    """The stop flag stays set until the worker leaves, and a busy worker reads it at every
    maintenance: it said "stop requested by 'queuectl worker stop'" again each time, and once
    a stop by signal set the flag too, after every SIGTERM as well."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    workers = qc.start_workers(1)
    wait_until(started.exists, 15, "the job to start")
    if how == "SIGTERM":
        workers.signal(signal.SIGTERM)
    else:
        assert qc.run("worker", "stop", "--timeout", "0.1").returncode == 1  # still finishing
    wait_until(lambda: [w["stopping"] for w in qc.json("status")["workers"]] == [True], 5,
               "status to show the worker stopping")
    beats: set[str] = set()
    wait_until(lambda: beats.add(qc.json("status")["workers"][0]["last_heartbeat"])
               or len(beats) >= 3, 15, "maintenance to run a few times meanwhile")
    release.touch()
    assert workers.wait(15) == 0, workers.log()
    said = workers.log().count("stop requested by 'queuectl worker stop'")
    assert said == (1 if how == "worker stop" else 0), workers.log()
    _finished_once_uncharged(qc, done)
