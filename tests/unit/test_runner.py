import os
import signal

import pytest

from queuectl.runner import describe_exit


@pytest.mark.parametrize(
    "returncode, expected",
    [
        (0, (0, None)),
        (1, (1, "exit code 1")),
        (3, (3, "exit code 3")),
        (255, (255, "exit code 255")),
        (127, (127, "exit code 127 (command not found?)")),
        (-signal.SIGKILL, (137, "killed by SIGKILL")),
        (-signal.SIGTERM, (143, "killed by SIGTERM")),
        (-signal.SIGSEGV, (139, "killed by SIGSEGV")),
        (-99, (227, "killed by signal 99")),
    ],
)
def test_describe_exit(returncode, expected):
    assert describe_exit(returncode) == expected


def test_a_job_runs_in_its_folder_and_the_worker_stays_in_its_own(tmp_path):
    from queuectl.runner import RunningJob

    here = os.getcwd()
    running = RunningJob("pwd", cwd=str(tmp_path))
    assert running.wait() == 0
    running.finish()
    assert running.output.head.decode().strip() == str(tmp_path)
    assert os.getcwd() == here


def test_a_job_gets_no_descriptor_the_worker_was_started_with(tmp_path):
    from queuectl.runner import RunningJob, close_inherited_fds

    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)  # as a shell's `3>file` would hand it over
    try:
        close_inherited_fds()
        running = RunningJob(f"if [ -e /proc/$$/fd/{write_fd} ]; then echo open; "
                             "else echo closed; fi")
        running.wait()
        running.finish()
        assert running.output.head.decode().strip() == "closed"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_job_whose_folder_is_the_workers_own_runs_there(tmp_path, monkeypatch):
    """No chdir for a job in the worker's own folder (the usual case); still that folder."""
    from queuectl.runner import RunningJob

    monkeypatch.chdir(tmp_path)
    running = RunningJob("pwd", cwd=str(tmp_path))
    assert running.wait() == 0
    running.finish()
    assert running.output.head.decode().strip() == str(tmp_path)
    assert os.getcwd() == str(tmp_path)


def test_a_job_still_running_at_the_first_look_wakes_its_waiter_when_it_exits():
    """The pidfd, opened on the first wait that needs it, wakes pump() at the exit: the output
    pipe is closed long before, so nothing else would (without a pidfd pump() polls every
    50 ms: many more calls)."""
    from queuectl.runner import RunningJob

    running = RunningJob("exec >/dev/null 2>&1; sleep 0.3")
    pumps = 0
    while running.poll() is None:
        running.pump(timeout=10.0)
        pumps += 1
    running.finish()
    assert running.returncode == 0
    assert pumps <= 3
