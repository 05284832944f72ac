"""Queue-wide settings: the keys, their defaults and types, and validation of `config set`.

Values live in the database's `config` table so every worker and CLI call on a queue agrees;
a key missing there has its default.
"""

from __future__ import annotations

from queuectl.errors import InputError
from queuectl.record import Record
from queuectl.timeutil import parse_duration

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any


class Key(Record):
    name: str
    default: Any
    kind: type  # int or float
    minimum: float
    help: str
    duration: bool = False  # accepts 30s / 5m forms
    # Past this, values stop fitting: max-retries must fit the jobs table's integer column,
    # and now + lease-seconds must still be a date `show` can print.
    maximum: float = 2**31 - 1


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("max-retries", 3, int, 0, "retries after the first run before a job is dead"),
        Key("backoff-base", 2.0, float, 1, "retry delay is base ** attempts seconds"),
        Key(
            "lease-seconds",
            15.0,
            float,
            2,
            "how long a running job's lease lasts without a heartbeat before any worker "
            "recovers it",
            duration=True,
        ),
        Key(
            "heartbeat-seconds",
            5.0,
            float,
            0.2,
            "how often a worker renews its jobs' leases (keep below lease-seconds / 2)",
            duration=True,
        ),
        Key(
            "poll-seconds",
            1.0,
            float,
            0.01,
            "longest an idle worker waits before looking for due jobs again",
            duration=True,
        ),
        Key("max-crashes", 3, int, 1, "worker crashes during one job before the job is dead"),
        Key(
            "backoff-jitter",
            0.0,
            float,
            0,
            "random spread of retry delays: 0.2 means anywhere from 0.8x to 1.2x (0: exact)",
            maximum=1,
        ),
        Key(
            "job-timeout",
            0.0,
            float,
            0,
            "default timeout of a job that sets none, in seconds (0: no timeout)",
            duration=True,
        ),
        Key(
            "output-limit",
            1 << 20,
            int,
            0,
            "bytes of output kept per run: the first and last half, the middle cut",
        ),
        Key(
            "retention",
            0.0,
            float,
            0,
            "workers delete completed and cancelled jobs older than this (0: keep forever)",
            duration=True,
        ),
    )
}


def parse_value(name: str, text: Any) -> int | float:
    key = get_key(name)
    try:
        if key.duration and isinstance(text, str):
            value: int | float = parse_duration(text)
        elif key.kind is int:
            if isinstance(text, bool):
                raise ValueError
            value = int(text) if isinstance(text, int) else int(str(text).strip(), 10)
        else:
            value = float(text)
    except (ValueError, TypeError):
        kind = "an integer" if key.kind is int else "a number"
        raise InputError(f"config {name!r} must be {kind}, got {text!r}") from None
    if not value >= key.minimum:
        raise InputError(f"config {name!r} must be >= {key.minimum:g}, got {text!r}")
    if not value <= key.maximum:
        raise InputError(f"config {name!r} must be <= {key.maximum:g}, got {text!r}")
    return value


def get_key(name: str) -> Key:
    if name not in KEYS:
        raise InputError(f"unknown config key {name!r}; known keys: {', '.join(KEYS)}")
    return KEYS[name]


class Settings:
    """Resolved values for one queue: stored values over defaults."""

    def __init__(self, stored: dict[str, str] | None = None):
        self._values = {name: key.default for name, key in KEYS.items()}
        for name, text in (stored or {}).items():
            if name in KEYS:
                self._values[name] = parse_value(name, text)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def items(self):
        return self._values.items()

    def check_timing(self) -> None:
        """Heartbeats must come well inside the lease, or healthy jobs would be recovered."""
        beat, lease = self["heartbeat-seconds"], self["lease-seconds"]
        if beat * 2 > lease:
            raise InputError(
                f"heartbeat-seconds ({beat:g}) must be at most half of lease-seconds "
                f"({lease:g}); set both at once, e.g. 'queuectl config set lease-seconds "
                f"{max(lease, 2):g} heartbeat-seconds {max(lease, 2) / 4:g}'"
            )
