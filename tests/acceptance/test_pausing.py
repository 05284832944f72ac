"""Ctrl-Z pauses `worker start`: the running job goes on, keeps its lease and is recorded; no
new job starts until `fg`, `bg` or SIGCONT. Before, Ctrl-Z stopped every worker mid-job while
its job ran on in a session of its own: the lease ran out, and the job was taken over and run
again."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading

import pytest

from .helpers import Workers, children_of, process_state, wait_until
from .test_stopping import _finished_once_uncharged, _running_job, _take_as_controlling_terminal

pytestmark = pytest.mark.timeout(90)


def _lease_kept_while_paused(qc, supervisor: int) -> None:
    """The running job's lease is renewed again and again while the pool is paused: it ends
    two seconds after each renewal (fast settings), and five different ends span well over
    one lease."""
    ends: set[str] = set()

    def renewed_enough() -> bool:
        assert process_state(supervisor) == "T", "the pool was resumed too early"
        job = qc.show("running")
        assert (job["state"], job["runs"]) == ("processing", 1), job
        ends.add(job["lease_expires_at"])
        return len(ends) >= 5

    wait_until(renewed_enough, 20, "the running job's lease to be renewed while paused")


def _paused_pool_finishes_its_job_and_takes_no_other(qc, release) -> None:
    qc.enqueue({"id": "waiting", "command": "true"})  # wakes the idle worker
    release.touch()
    qc.wait_for_state("running", "completed", timeout=15)  # recorded while paused
    waiting = qc.show("waiting")  # two workers, both free by now, and neither took it
    assert (waiting["state"], waiting["runs"]) == ("pending", 0)
    # Whoever watches from elsewhere sees why they take nothing.
    wait_until(lambda: _shown_as(qc) == [("paused", False, True)] * 2, 10,
               "status to show both workers paused")
    assert "paused" in qc.ok("status").stdout


def _shown_as(qc) -> list[tuple]:
    return [("paused" if w["paused"] else "stopping" if w["stopping"] else "working",
             w["stopping"], w["paused"]) for w in qc.json("status")["workers"]]


def _resumed_in_status(qc) -> None:
    wait_until(lambda: _shown_as(qc) == [("working", False, False)] * 2, 10,
               "status to show both workers working again")


def test_sigtstp_to_the_group_pauses_and_sigcont_resumes(qc, tmp_path):
    """What a terminal's Ctrl-Z and `fg` send, to a pool in a process group of its own within
    this session, as a shell's job control puts it."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    workers = qc.start_workers(2, start_new_session=False, process_group=0)
    wait_until(started.exists, 15, "the job to start")
    pids = wait_until(lambda: len(c := children_of(workers.pid)) == 2 and c, 15, "both workers")

    workers.signal_group(signal.SIGTSTP)
    wait_until(lambda: process_state(workers.pid) == "T", 5, "the supervisor to stop")
    assert [process_state(pid) != "T" for pid in pids] == [True, True]
    _lease_kept_while_paused(qc, workers.pid)
    _paused_pool_finishes_its_job_and_takes_no_other(qc, release)

    workers.signal_group(signal.SIGCONT)
    qc.wait_for_state("waiting", "completed", timeout=15)
    _resumed_in_status(qc)
    _finished_once_uncharged(qc, done, workers_gone=False)
    assert "paused" in workers.log() and "resumed" in workers.log()
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()


def test_a_pool_started_by_a_script_pauses_with_the_script(qc, tmp_path):
    """`worker start` run by a script (a shell without job control, so in the script's group,
    its parent there too): Ctrl-Z stops the script and pauses the pool; `fg` resumes both. The
    supervisor looks past its own parent for the shell that could continue the group."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    log_path = tmp_path / "script.log"
    command = shlex.join(qc.cli.command("worker", "start", "--count", "2"))
    with open(log_path, "w") as log:
        script = subprocess.Popen(["bash", "-c", f"{command}; echo script went on"],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  cwd=qc.cli.cwd, process_group=0)
    workers = Workers(script, log_path)
    qc.started.append(workers)  # for the clean-up
    wait_until(started.exists, 15, "the job to start")
    supervisor = wait_until(lambda: children_of(script.pid), 5, "worker start")[0]

    workers.signal_group(signal.SIGTSTP)
    wait_until(lambda: process_state(supervisor) == process_state(script.pid) == "T", 5,
               "the supervisor and the script to stop")
    _lease_kept_while_paused(qc, supervisor)
    _paused_pool_finishes_its_job_and_takes_no_other(qc, release)

    workers.signal_group(signal.SIGCONT)
    qc.wait_for_state("waiting", "completed", timeout=15)
    _resumed_in_status(qc)
    _finished_once_uncharged(qc, done, workers_gone=False)
    os.kill(supervisor, signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()
    assert "script went on" in workers.log()


def test_in_a_session_of_its_own_sigtstp_changes_nothing(qc, tmp_path):
    """No shell could continue a pool started with `setsid` (or by a service manager), so the
    kernel would discard a terminal stop there; the supervisor does not pause either."""
    qc.fast()
    workers = qc.start_workers(1)
    wait_until(lambda: "started 1 worker" in workers.log(), 15, "the supervisor to start")
    workers.signal_group(signal.SIGTSTP)
    wait_until(lambda: "SIGTSTP ignored" in workers.log(), 15, "the supervisor to say so")
    qc.enqueue({"id": "after", "command": "true"})
    qc.wait_for_state("after", "completed", timeout=15)
    workers.signal(signal.SIGTERM)
    assert workers.wait(15) == 0, workers.log()


class _Terminal:
    """An interactive bash on a pseudo-terminal, whose output is collected as it comes (an
    unread terminal would fill up and block whoever writes to it)."""

    def __init__(self, cwd) -> None:
        self.controller, terminal = os.openpty()
        env = {**os.environ, "PS1": "$ ", "TERM": "dumb"}
        try:
            self.shell = subprocess.Popen(
                ["bash", "--norc", "--noprofile", "-i"], stdin=terminal, stdout=terminal,
                stderr=terminal, cwd=cwd, env=env, start_new_session=True,
                preexec_fn=_take_as_controlling_terminal)
        finally:
            os.close(terminal)
        self._output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.controller, 4096)
            except OSError:
                return
            if not data:
                return
            self._output += data

    def output(self) -> str:
        return self._output.decode(errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.controller, keys.encode())

    def close(self) -> None:
        self.shell.kill()
        self.shell.wait()
        os.close(self.controller)


def test_ctrl_z_in_a_shell_pauses_and_fg_resumes(qc, tmp_path):
    """The real thing: `worker start` typed into an interactive bash on a terminal, Ctrl-Z,
    then `fg`. With `stty tostop`, a worker that wrote its log to the terminal once the shell
    had it back would be stopped by SIGTTOU all the same; it writes on."""
    qc.fast()
    started, release, done = _running_job(qc, tmp_path)
    terminal = _Terminal(qc.cli.cwd)
    try:
        terminal.type("stty tostop\n")
        terminal.type(shlex.join(qc.cli.command("worker", "start", "--count", "2")) + "\n")
        wait_until(started.exists, 15, "the job to start")
        supervisor = wait_until(lambda: children_of(terminal.shell.pid), 5, "worker start")[0]
        terminal.type("\x1a")  # Ctrl-Z
        wait_until(lambda: "Stopped" in terminal.output(), 5, "the shell to report the stop")
        assert process_state(supervisor) == "T"
        _lease_kept_while_paused(qc, supervisor)
        _paused_pool_finishes_its_job_and_takes_no_other(qc, release)
        wait_until(lambda: "job running completed" in terminal.output(), 5,
                   "the worker's log line to reach the terminal")

        terminal.type("fg\n")
        qc.wait_for_state("waiting", "completed", timeout=15)
        _resumed_in_status(qc)
        terminal.type("\x03")  # Ctrl-C: a warm stop, nothing is running
        wait_until(lambda: "all workers stopped" in terminal.output(), 15,
                   "worker start to stop")
        wait_until(lambda: not children_of(terminal.shell.pid), 15, "worker start to exit")
    finally:
        terminal.close()
    _finished_once_uncharged(qc, done)
    assert "resumed" in terminal.output()


def test_jobs_start_with_the_terminal_stop_signals_at_their_default(qc, tmp_path):
    """Workers ignore SIGTSTP, SIGTTOU and SIGTTIN for the pause; their jobs must not inherit
    that (a job that runs `vi` or its own job control expects the defaults)."""
    qc.fast()
    qc.enqueue({"id": "mask", "command": "grep SigIgn /proc/self/status"})
    workers = qc.start_workers(1, "--burst")
    assert workers.wait(15) == 0, workers.log()
    out = qc.run("logs", "mask").stdout
    mask = int(out.split("SigIgn:")[1].split()[0], 16)
    for signum in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        assert not mask & (1 << (signum - 1)), (signal.Signals(signum).name, out)
