"""What a job is: its states, its fields, and the validation of a job spec a user hands us.

Validation happens here, before any database is opened, so bad input never writes anything.
"""

from __future__ import annotations

import os
import re

from queuectl.errors import InputError
from queuectl.record import Record
from queuectl.timeutil import iso, parse_duration, parse_iso

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

PENDING, PROCESSING, COMPLETED, FAILED, DEAD, CANCELLED = (
    "pending",
    "processing",
    "completed",
    "failed",
    "dead",
    "cancelled",
)
STATES = (PENDING, PROCESSING, COMPLETED, FAILED, DEAD, CANCELLED)
TERMINAL_STATES = frozenset({COMPLETED, DEAD, CANCELLED})
# A run's outcomes (attempts.outcome) that are results of the job or of its worker: finished
# runs, counted in throughput and failure rates (stats.py, migration 10). `released` (a cold
# stop) and `cancelled` are the operator's doing. All but `completed` are failures.
FINISHED_OUTCOMES = frozenset({"completed", "failed", "timeout", "crashed"})


def minute_of(moment: float) -> int:
    """The minute a moment falls in, as run_minutes counts them: floor(seconds / 60)."""
    return int(moment // 60)


# Matched with fullmatch: `$` would also match before a final newline, letting "job1\n" in.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Fields a user may set when enqueueing. The read-only fields of the published job format
# (state, attempts, created_at, updated_at) are also accepted when they describe a new job, so
# a job written in the seed's published format (state "pending", attempts 0) is taken as it is.
SETTABLE_FIELDS = (
    "id",
    "command",
    "max_retries",
    "priority",
    "queue",
    "run_at",
    "delay",
    "timeout",
    "cwd",
    "env",
    "unique_key",
)
READ_ONLY_FIELDS = ("state", "attempts", "created_at", "updated_at")

# Bounds a value must fit before it is stored: integers fit a 32-bit column on every backend
# (SQLite refuses ints past 64 bits with OverflowError); times must render as ISO 8601 dates
# (year 1970 to 9999), or every `list` and `show` of the queue would fail on that job.
INT_MAX = 2**31 - 1
MAX_SECONDS = 100 * 365 * 86400.0  # a century: any longer delay or timeout is a typo
LATEST_RUN_AT = 253402300799.0  # 9999-12-31T23:59:59Z
# The most bytes one argument or one NAME=value environment string can have when a job
# starts: Linux's MAX_ARG_STRLEN, 32 pages of 4 KiB, less the terminating NUL. A longer
# command was accepted, then failed every run with "Argument list too long" until the DLQ.
LONGEST_ARG_BYTES = 32 * 4096 - 1


class NewJob(Record):
    """A validated job spec, ready to insert. `None` means "use the queue's default"."""

    id: str | None
    command: str
    max_retries: int | None = None
    priority: int = 0
    queue: str = "default"
    run_at: float | None = None
    delay: float | None = None
    timeout: float | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    unique_key: str | None = None


class Job(Record):
    """A row of the jobs table. Times are epoch seconds; `to_dict` renders them as ISO 8601."""

    id: str
    command: str
    state: str
    attempts: int
    max_retries: int
    created_at: float
    updated_at: float
    run_at: float
    priority: int = 0
    queue: str = "default"
    timeout: float | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    unique_key: str | None = None
    runs: int = 0
    crashes: int = 0
    last_error: str | None = None
    exit_code: int | None = None
    worker_id: str | None = None
    host: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    started_at: float | None = None
    pgid: int | None = None
    pgid_started: str | None = None
    finished_at: float | None = None
    cancel_requested: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "state": self.state,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "next_run_at": iso(self.run_at) if self.state in (PENDING, FAILED) else None,
            "finished_at": iso(self.finished_at),
            "priority": self.priority,
            "queue": self.queue,
            "timeout": self.timeout,
            "cwd": self.cwd,
            "env": self.env,
            "unique_key": self.unique_key,
            "runs": self.runs,
            "crashes": self.crashes,
            "exit_code": self.exit_code,
            "last_error": self.last_error,
            "worker": self.worker_id,
            "host": self.host,
            "started_at": iso(self.started_at) if self.state == PROCESSING else None,
            "lease_expires_at": iso(self.lease_expires_at) if self.state == PROCESSING else None,
            "cancel_requested": bool(self.cancel_requested),
        }


def new_job_id() -> str:
    return os.urandom(6).hex()


def new_job_ids(count: int) -> Iterator[str]:
    """`count` ids like new_job_id's, from one read of the system's randomness instead of one
    per id (a bulk enqueue draws 100,000)."""
    drawn = os.urandom(6 * count).hex()
    return (drawn[start : start + 12] for start in range(0, len(drawn), 12))


def validate_state(state: str) -> str:
    if state not in STATES:
        raise InputError(f"unknown state {state!r}; use one of: {', '.join(STATES)}")
    return state


def _where(index: int | None) -> str:
    return "" if index is None else f"job #{index + 1}: "


def _int(spec: dict, name: str, where: str, minimum: int = -INT_MAX - 1) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}{name!r} must be an integer, got {value!r}")
    if not minimum <= value <= INT_MAX:
        raise InputError(f"{where}{name!r} must be between {minimum} and {INT_MAX}, got {value}")
    return value


def _is_text(value: Any) -> bool:
    """A string every backend stores and every exec passes on: no NUL, and no lone surrogate
    (JSON's "\\ud800" decodes to one; it has no UTF-8 form, so SQLite would refuse it)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    if value.isascii():  # no surrogate is ASCII; isascii() reads a flag, encode() copies
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _byte_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _too_long(text: str) -> bool:
    # A character is at most 4 bytes: most texts are decided without encoding them.
    return len(text) * 4 > LONGEST_ARG_BYTES and _byte_size(text) > LONGEST_ARG_BYTES


def _str(spec: dict, name: str, where: str) -> str | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}{name!r} must be a string, got {value!r}")
    if not _is_text(value):
        raise InputError(f"{where}{name!r} must be text without NUL bytes or lone surrogates, "
                         f"got {value!r}")
    return value


def _seconds(spec: dict, name: str, where: str) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{where}{name!r} must be a number of seconds or a duration like 30s")
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(value)
    except (ValueError, TypeError, OverflowError):
        raise InputError(
            f"{where}{name!r} must be a number of seconds or a duration like 30s, got {value!r}"
        ) from None
    if not 0 <= seconds <= MAX_SECONDS:
        raise InputError(
            f"{where}{name!r} must be between 0 and {MAX_SECONDS:.0f} seconds, got {value!r}"
        )
    return seconds


_PLAIN_FIELDS = frozenset({"id", "command", "queue", "priority", "max_retries", "cwd",
                           "unique_key"})


def _parse_plain(spec: Any) -> NewJob | None:
    """The common job (a command, maybe an id, queue, priority, retries, cwd or key), checked
    by the same rules as below in a fraction of the time: a bulk enqueue validates 100,000
    of them. None for anything else, including anything wrong, which parse_job_spec then
    checks field by field to say what is wrong."""
    if type(spec) is not dict or not _PLAIN_FIELDS.issuperset(spec):
        return None
    get = spec.get
    command = get("command")
    if (type(command) is not str or not command.strip() or not _is_text(command)
            or _too_long(command)):
        return None
    job_id = get("id")
    if job_id is not None and (type(job_id) is not str or not _ID.fullmatch(job_id)):
        return None
    queue = get("queue")
    if queue is None:
        queue = "default"
    elif type(queue) is not str or not _QUEUE.fullmatch(queue):
        return None
    priority = get("priority")
    if priority is None:
        priority = 0
    elif type(priority) is not int or not -INT_MAX - 1 <= priority <= INT_MAX:
        return None
    max_retries = get("max_retries")
    if max_retries is not None and (type(max_retries) is not int
                                    or not 0 <= max_retries <= INT_MAX):
        return None
    cwd = get("cwd")
    if cwd is not None and (type(cwd) is not str or not cwd.startswith("/")
                            or not _is_text(cwd)):
        return None
    unique_key = get("unique_key")
    if unique_key is not None and (type(unique_key) is not str or not unique_key
                                   or not _is_text(unique_key)):
        return None
    return NewJob.trusted({"id": job_id, "command": command, "max_retries": max_retries,
                           "priority": priority, "queue": queue, "run_at": None,
                           "delay": None, "timeout": None, "cwd": cwd, "env": {},
                           "unique_key": unique_key})


def parse_job_spec(spec: Any, index: int | None = None) -> NewJob:
    """Turn one decoded JSON value into a NewJob, or raise InputError naming what is wrong."""
    plain = _parse_plain(spec)
    if plain is not None:
        return plain
    where = _where(index)
    if not isinstance(spec, dict):
        raise InputError(
            f"{where}a job must be a JSON object like "
            f'{{"command": "echo hi"}}, got {type(spec).__name__}'
        )
    unknown = sorted(set(spec) - set(SETTABLE_FIELDS) - set(READ_ONLY_FIELDS))
    if unknown:
        raise InputError(
            f"{where}unknown field {unknown[0]!r}; known fields: {', '.join(SETTABLE_FIELDS)}"
        )
    if spec.get("state", PENDING) != PENDING:
        raise InputError(f"{where}a new job's state can only be 'pending', got {spec['state']!r}")
    attempts = spec.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts != 0:
        raise InputError(f"{where}a new job's attempts can only be 0, got {spec['attempts']!r}")

    command = spec.get("command")
    if command is None:
        raise InputError(f"{where}missing 'command' (the shell command to run)")
    if not isinstance(command, str):
        raise InputError(f"{where}'command' must be a string, got {command!r}")
    if not command.strip():
        raise InputError(f"{where}'command' is empty")
    if "\0" in command:
        raise InputError(f"{where}'command' contains a NUL byte")
    if not _is_text(command):
        raise InputError(f"{where}'command' holds a lone surrogate, which is not text")
    if _too_long(command):
        raise InputError(f"{where}'command' is {_byte_size(command):,} bytes, and a command "
                         f"can have at most {LONGEST_ARG_BYTES:,} (the kernel's limit for one "
                         "argument); put it in a script file and enqueue 'sh /path/to/it'")

    job_id = _str(spec, "id", where)
    if job_id is not None and not _ID.fullmatch(job_id):
        raise InputError(
            f"{where}'id' {job_id!r} is not valid: use 1-128 letters, digits or _.:@+- "
            "starting with a letter or digit"
        )

    queue = _str(spec, "queue", where)
    queue = "default" if queue is None else queue
    if not _QUEUE.fullmatch(queue):
        raise InputError(f"{where}'queue' {queue!r} is not valid: use letters, digits or _.-")

    run_at = None
    if spec.get("run_at") is not None:
        try:
            run_at = parse_iso(_str(spec, "run_at", where) or "")
        except ValueError as exc:
            raise InputError(f"{where}'run_at': {exc}") from None
        if not 0 <= run_at <= LATEST_RUN_AT:
            raise InputError(
                f"{where}'run_at' must be between 1970 and 9999, got {spec['run_at']!r}"
            )

    env = spec.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise InputError(f"{where}'env' must be an object of NAME: value strings")
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name) or not _is_text(value):
            raise InputError(f"{where}'env' entry {name!r} must be NAME: 'string value'")
        if _too_long(f"{name}={value}"):
            raise InputError(f"{where}'env' entry {name!r} is {_byte_size(value):,} bytes; "
                             f"NAME=value can have at most {LONGEST_ARG_BYTES:,} (the kernel's "
                             "limit for one environment string); pass a file's path instead")

    cwd = _str(spec, "cwd", where)
    if cwd is not None and not cwd.startswith("/"):
        raise InputError(f"{where}'cwd' must be an absolute path, got {cwd!r}")

    timeout = _seconds(spec, "timeout", where)
    if timeout == 0:
        raise InputError(f"{where}'timeout' must be > 0 (omit it for no timeout)")

    unique_key = _str(spec, "unique_key", where)
    if unique_key is not None and not unique_key:
        raise InputError(f"{where}'unique_key' must not be empty")

    priority = _int(spec, "priority", where)
    return NewJob(
        id=job_id,
        command=command,
        max_retries=_int(spec, "max_retries", where, minimum=0),
        priority=0 if priority is None else priority,
        queue=queue,
        run_at=run_at,
        delay=_seconds(spec, "delay", where),
        timeout=timeout,
        cwd=cwd,
        env=dict(env),
        unique_key=unique_key,
    )


def check_unique_ids(jobs: list[NewJob]) -> None:
    """One input may not give the same id twice: refused here, before any database is opened,
    rather than by the store once it has one."""
    first: dict[str, int] = {}
    for index, job in enumerate(jobs):
        if job.id is None:
            continue
        if job.id in first:
            raise InputError(f"job #{index + 1}: id {job.id!r} is also the id of job "
                             f"#{first[job.id] + 1} of this input; ids must be unique")
        first[job.id] = index
