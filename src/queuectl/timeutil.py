"""Time as the database stores it (epoch seconds) and as users read it (ISO 8601, UTC)."""

import re
import time

# ASCII: \d would also take other scripts' digits ("٣s"), which float() reads as numbers.
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    """2026-11-27T10:00:00Z: whole seconds, UTC, the format the CLI contract names."""
    if ts is None:
        return None
    from datetime import UTC, datetime  # here: enqueue never renders a time, and start-up counts

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(ts: float | None) -> str | None:
    """2026-11-27T10:00:00.250Z: for run history, where 2.25 s backoffs must be visible."""
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float:
    """Accepts any ISO 8601 form Python reads; a time without zone is taken as UTC."""
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not an ISO 8601 time (like 2026-11-27T10:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_duration(text: str) -> float:
    """'30s', '5m', '2h', '7d', '250ms' or a bare number of seconds."""
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (like 30s, 5m, 2h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def ago(seconds: float) -> str:
    """A short human age: 3s, 4m12s, 2h05m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
