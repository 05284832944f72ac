"""Stop requests by real signals, in this process: what one, two and mixed signals add up to,
and that a signal handled in the middle of another's handler is never lost."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from queuectl import stopping
from queuectl.stopping import COLD, RUNNING, WARM, StopRequests


@contextmanager
def installed(counting: bool) -> Iterator[StopRequests]:
    """A StopRequests with its handlers in place; the test process's own restored after."""
    saved = {sig: signal.getsignal(sig) for sig in stopping.STOP_SIGNALS}
    stops = StopRequests().install(counting=counting)
    try:
        yield stops
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(stops.wake_fd)


def send(*signums: int) -> None:
    """Signal this process; each handler has run when this returns (CPython runs a handler for
    a signal sent to its own main thread before the next instruction)."""
    for signum in signums:
        os.kill(os.getpid(), signum)


@pytest.mark.parametrize(("counting", "signums", "level"), [
    (True, (), RUNNING),
    (True, (signal.SIGTERM,), WARM),
    (True, (signal.SIGINT, signal.SIGTERM), COLD),
    (True, (signal.SIGUSR1, signal.SIGUSR1), WARM),
    (True, (signal.SIGUSR1, signal.SIGTERM), COLD),  # a stop was asked, then a second one
    (True, (signal.SIGHUP, signal.SIGHUP, signal.SIGHUP), WARM),
    (True, (signal.SIGHUP, signal.SIGUSR2), COLD),
    (True, (signal.SIGHUP, signal.SIGTERM), COLD),  # the hang-up's log says: another SIGTERM
    # A worker: its SIGINT/SIGTERM also come forwarded, so they never add up by themselves.
    (False, (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT), WARM),
    (False, (signal.SIGUSR1, signal.SIGTERM, signal.SIGUSR2, signal.SIGINT), COLD),
])
def test_what_signals_add_up_to(counting, signums, level):
    with installed(counting) as stops:
        send(*signums)
        assert stops.level == level
        assert stops.hung_up == (signal.SIGHUP in signums)


def test_a_stop_the_program_requested_only_ever_rises():
    with installed(counting=False) as stops:
        stops.request(WARM)
        send(signal.SIGUSR1)
        stops.request(RUNNING)
        assert stops.level == WARM
        send(signal.SIGUSR2)
        stops.request(WARM)
        assert stops.level == COLD


@contextmanager
def cold_signal_at_instruction(n: int) -> Iterator[list[int]]:
    """Send SIGUSR2 ("cold") to this process just before the n-th bytecode instruction run in
    stopping.py's handlers: its handler then runs nested inside the one being traced, as when a
    supervisor's forward arrives while a worker handles the same group's signal. Yields a list
    that holds n once the signal was sent (the handlers may run fewer instructions)."""
    seen = [0]
    sent: list[int] = []

    def trace(frame, event, arg):
        if frame.f_code.co_filename != stopping.__file__:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode" and not sent:
            seen[0] += 1
            if seen[0] == n:
                sent.append(n)
                os.kill(os.getpid(), signal.SIGUSR2)
        return trace

    sys.settrace(trace)
    try:
        yield sent
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1,
                                    signal.SIGHUP])
def test_a_cold_stop_that_interrupts_another_handler_is_never_lost(signum):
    """Found by chaos scenario 5 (a group's second Ctrl-C, about one run in two): the worker's
    handler read the level, the supervisor's SIGUSR2 arrived and its handler set cold, and the
    first handler wrote back warm. The job then ran on through a cold stop."""
    for instruction in range(1, 60):
        with installed(counting=False) as stops:
            with cold_signal_at_instruction(instruction) as sent:
                send(signum)
            if not sent:  # past the handler's last instruction: every point was tried
                assert instruction > 1
                return
            assert stops.level == COLD, f"cold lost when it came at instruction {instruction}"
    pytest.fail("the handler ran more instructions than expected")
