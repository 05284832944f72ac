import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.timeutil import ago, iso, parse_duration, parse_iso

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
NOV_27_10H = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC).timestamp()


def test_iso_format():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(NOV_27_10H) == "2026-11-27T10:00:00Z"
    assert iso(None) is None


def test_iso_drops_fractions_rather_than_rounding_up():
    assert iso(NOV_27_10H + 0.999) == "2026-11-27T10:00:00Z"


@given(st.floats(min_value=0, max_value=253402300799))
def test_iso_is_always_exactly_the_contract_format(ts):
    assert ISO.fullmatch(iso(ts))


def test_parse_iso_forms():
    assert parse_iso("2026-11-27T10:00:00Z") == NOV_27_10H
    assert parse_iso("2026-11-27T10:00:00+00:00") == NOV_27_10H
    assert parse_iso("2026-11-27T12:00:00+02:00") == NOV_27_10H
    assert parse_iso("2026-11-27T05:30:00-04:30") == NOV_27_10H
    assert parse_iso("2026-11-27T10:00:00") == NOV_27_10H  # naive: taken as UTC
    assert parse_iso("  2026-11-27T10:00:00Z\n") == NOV_27_10H
    assert parse_iso("2026-11-27T10:00:00.250Z") == NOV_27_10H + 0.25
    assert parse_iso("2026-11-27") == datetime(2026, 11, 27, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-11-27T25:00:00Z", "27/11/2026", None, 5])
def test_parse_iso_rejects(text):
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_iso(text)


@given(st.integers(min_value=0, max_value=253402300799))
def test_iso_round_trips(seconds):
    assert parse_iso(iso(seconds)) == seconds


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800), ("250ms", 0.25), ("1.5", 1.5),
     ("10", 10), (" 3 s ", 3), ("0", 0), ("1.5m", 90), (12, 12)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1x", "1h30m", "1e3", "abc", "5S", ".5s", None])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [(-4, "0s"), (0, "0s"), (3.9, "3s"), (59, "59s"), (60, "1m00s"), (252, "4m12s"),
     (3599, "59m59s"), (3600, "1h00m"), (7500, "2h05m"), (90000, "25h00m")],
)
def test_ago(seconds, text):
    assert ago(seconds) == text
