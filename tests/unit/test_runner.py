import os
import signal
import time

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


def _ignored_signals_of_a_job() -> set[int]:
    from queuectl.runner import RunningJob

    running = RunningJob("grep SigIgn /proc/self/status")
    assert running.wait() == 0
    running.finish()
    mask = int(running.output.head.decode().split()[1], 16)
    return {sig for sig in range(1, 65) if mask & (1 << (sig - 1))} - {32, 33}  # glibc's own


def test_a_job_does_not_inherit_the_signals_python_ignores():
    """Python ignores SIGPIPE and SIGXFSZ for itself; a job that inherited that would see
    `yes | head -1` complain of a broken pipe, and a shell loop writing into `head` never end."""
    from queuectl.runner import RunningJob

    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # so the test means something
    assert _ignored_signals_of_a_job() == set()

    running = RunningJob("yes | head -1; while :; do echo more; done | head -1")
    deadline = time.monotonic() + 10
    while running.poll() is None and time.monotonic() < deadline:
        running.pump(timeout=0.1)
    if running.poll() is None:
        running.kill(grace=0.1)
        pytest.fail("a loop writing into `head` never got SIGPIPE")
    running.finish()
    assert running.returncode == 0
    assert running.output.head.decode() == "y\nmore\n"


def test_a_signal_the_workers_parent_ignored_stays_ignored_in_the_job(monkeypatch):
    """`nohup queuectl worker start`: its jobs ignore SIGHUP too, as from a shell."""
    from queuectl import runner

    monkeypatch.setattr(runner, "_defaulted", None)  # worked out afresh, as a new worker would
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert _ignored_signals_of_a_job() == {signal.SIGHUP}
    finally:
        signal.signal(signal.SIGHUP, previous)
