"""The guardian process of watchdog.py, with real processes: it kills the job in flight when
its worker lets go mid-job, and leaves at once when the worker closes it between jobs; while
nothing is said on its pipe it does not wake up at all."""

from __future__ import annotations

import os

from conditions import asleep_for, wait_until
from queuectl.processes import group_alive
from queuectl.runner import RunningJob
from queuectl.watchdog import Watchdog


def test_closing_mid_job_kills_the_job_in_flight():
    watchdog = Watchdog()
    job = RunningJob("sleep 30")
    try:
        watchdog.job_started(job.pgid)
        watchdog.close()  # as when the worker fails with its job still running
        wait_until(lambda: job.poll() is not None, 10.0, "the guardian to kill the job")
        assert job.returncode < 0  # killed by a signal, not finished
    finally:
        if job.poll() is None:
            job.kill(grace=0)
        job.finish()


def test_closing_between_jobs_ends_the_guardian_and_leaves_the_finished_job_alone():
    watchdog = Watchdog()
    job = RunningJob("true")
    watchdog.job_started(job.pgid)
    assert job.wait() == 0
    job.finish()
    watchdog.job_ended(job.pgid)
    guardian = watchdog.pid
    watchdog.close()
    # close() reaped it: the pid names no child of ours any more
    assert not _pid_is_our_child(guardian)
    assert not group_alive(job.pgid)


def test_an_idle_guardian_sleeps_until_told_something_and_still_kills_the_job_at_once():
    """An idle worker's guardian used to wake five times a second to read an empty pipe (on a
    virtual machine a wake-up costs milliseconds of CPU). Now it blocks once a look finds
    nothing: it must still wake for the next "+pgid", read the job's stamp, go quiet again
    while the job runs, and see the end-of-file the moment its worker lets go."""
    watchdog = Watchdog()
    job = None
    try:
        wait_until(lambda: asleep_for([watchdog.pid], 0.5), 10.0, "the idle guardian to go quiet")
        job = RunningJob("sleep 30")
        watchdog.job_started(job.pgid)
        wait_until(lambda: asleep_for([watchdog.pid], 0.5), 10.0,
                   "the guardian to go quiet again during a long job")
        watchdog.close()  # as when the worker dies with its job still running
        wait_until(lambda: job.poll() is not None, 2.0, "the guardian to kill the job")
        assert job.returncode < 0  # killed by a signal, not finished
    finally:
        watchdog.close()
        if job is not None:
            if job.poll() is None:
                job.kill(grace=0)
            job.finish()


def _pid_is_our_child(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True
