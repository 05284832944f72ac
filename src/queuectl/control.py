"""Commands that control or watch individual jobs: cancel, wait, logs (and -f), purge.

Kept apart from cli.py (the parser) so each file stays small; same conventions: stdout for
results, stderr for messages, --json prints only JSON.
"""

from __future__ import annotations

import sys
import time

from queuectl.cli import open_queue  # opens without creating: these commands only look
from queuectl.errors import InputError
from queuectl.models import CANCELLED, COMPLETED, PROCESSING, TERMINAL_STATES
from queuectl.output import message, print_json

EXIT_OK, EXIT_FAILURE, EXIT_TIMEOUT = 0, 1, 124
POLL_SECONDS = 0.1
CANCEL_WAIT_SECONDS = 15.0


def cmd_cancel(args) -> int:
    with open_queue(args) as queue:
        results = queue.cancel(*args.job_ids)
        running = [job_id for job_id, how in results.items() if how == "cancelling"]
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while running and not args.no_wait and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            for job_id in list(running):
                state = queue.get(job_id).state
                if state != PROCESSING:
                    results[job_id] = state
                    running.remove(job_id)
    if args.json:
        print_json([{"id": job_id, "state": how} for job_id, how in results.items()])
    for job_id, how in results.items():
        if how == CANCELLED:
            message(f"job {job_id} cancelled")
        elif how == "cancelling":
            message(f"job {job_id} is being cancelled (its worker will kill it)")
        else:
            message(f"job {job_id} finished as {how} before the cancel reached it")
    return EXIT_OK


def cmd_wait(args) -> int:
    from queuectl.progress import Progress

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_queue(args) as queue:
        states = queue.states(args.job_ids)  # an unknown id fails here, before any waiting
        progress = Progress("waiting", total=len(args.job_ids))
        while True:
            unfinished = [i for i in args.job_ids if states[i] not in TERMINAL_STATES]
            if unfinished:
                states.update(queue.states(unfinished))
            done = sum(state in TERMINAL_STATES for state in states.values())
            progress.update(done)
            if done == len(args.job_ids):
                break
            if deadline is not None and time.monotonic() >= deadline:
                progress.close()
                _report_states(args, states)
                message(f"timed out after {args.timeout:g}s with "
                        f"{len(args.job_ids) - done} job(s) not finished")
                return EXIT_TIMEOUT
            time.sleep(POLL_SECONDS)
        progress.close()
    _report_states(args, states)
    return EXIT_OK if all(s == COMPLETED for s in states.values()) else EXIT_FAILURE


def _report_states(args, states: dict[str, str]) -> None:
    if args.json:
        print_json([{"id": job_id, "state": state} for job_id, state in states.items()])
    else:
        for job_id, state in states.items():
            sys.stdout.write(f"{job_id} {state}\n")


def cmd_logs(args) -> int:
    with open_queue(args) as queue:
        if args.follow:
            if args.json:
                raise InputError("--follow prints the output as it comes; it cannot be --json")
            return _follow(queue, args.job_id)
        run, data = queue.output(args.job_id, args.attempt)
        job = queue.get(args.job_id)
    if args.json:
        print_json({"id": job.id, "run": run, "state": job.state,
                    "output": data.decode("utf-8", "replace")})
        return EXIT_OK
    message(f"== job {job.id}, run {run} of {job.runs}, {job.state} ==")
    _write(data)
    return EXIT_OK


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _follow(queue, job_id: str) -> int:
    """Print the job's output as it is stored, run after run, until the job is finished."""
    from queuectl.capture import cut_marker

    job = queue.get(job_id)
    run = max(job.runs, 1)
    position = 0
    while True:
        job = queue.get(job_id)
        if job.runs > run:  # the run we followed ended and a retry started
            position = _print_from(queue, job_id, run, position, cut_marker)
            run, position = job.runs, 0
            message(f"== job {job_id}, run {run} ==")
        position = _print_from(queue, job_id, run, position, cut_marker)
        if job.state in TERMINAL_STATES:
            position = _print_from(queue, job_id, run, position, cut_marker)
            message(f"== job {job_id} {job.state} ==")
            return EXIT_OK if job.state == COMPLETED else EXIT_FAILURE
        time.sleep(POLL_SECONDS * 2)


def _print_from(queue, job_id: str, run: int, position: int, cut_marker) -> int:
    for start, data in queue.store.output(job_id, run, position):
        end = start + len(data)
        if end <= position:
            continue
        if start > position:
            _write(cut_marker(start - position))
        elif start < position:
            data = data[position - start :]
        _write(data)
        position = end
    return position


def cmd_purge(args) -> int:
    from queuectl.progress import Progress
    from queuectl.timeutil import parse_duration

    states = [s.strip() for s in (args.state or "completed,cancelled").split(",") if s.strip()]
    for state in states:
        if state not in TERMINAL_STATES:
            raise InputError(f"--state {state!r}: only finished jobs can be purged "
                             "(completed, dead, cancelled)")
    try:
        older_than = parse_duration(args.older_than) if args.older_than else 0.0
    except ValueError as exc:
        raise InputError(f"--older-than: {exc}") from None
    progress = Progress("purged")
    with open_queue(args) as queue:
        count = queue.purge(states, older_than, progress=progress.update)
    progress.close()
    if args.json:
        print_json({"purged": count, "states": states})
    else:
        message(f"deleted {count} job(s) in state {', '.join(states)}")
    return EXIT_OK
