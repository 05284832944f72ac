"""Whatever a user hands `queuectl enqueue` (as an argument, on stdin, in a --file of JSON
Lines, and as flags), the real CLI either stores every job exactly as given, or refuses with
exit 2, one line on stderr, no traceback, and nothing written.

Each example costs two CLI processes (the enqueue, then `list --json` to read the queue back),
so the example counts are small; tests/unit/test_models.py runs the validation itself on many
more inputs in-process.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import assert_one_error_line

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("QUEUECTL_CLI_EXAMPLES", "30"))  # ~12 s on SQLite, 2 cores
DEFAULT_MAX_RETRIES = 3
FIELDS = ("id", "command", "max_retries", "priority", "queue", "run_at", "delay", "timeout",
          "cwd", "env", "unique_key", "state", "attempts", "created_at", "updated_at")

# -- inputs -------------------------------------------------------------------------------------

# Argument vectors cannot hold NUL, nor surrogates outside \udc80-\udcff (Python's stand-ins for
# bytes that are not UTF-8, which do reach the CLI as such bytes).
arg_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   max_size=12) | st.sampled_from(["\udcff", "/tmp/\udc80x", " ", "-x"])
any_text = st.text(max_size=12)  # JSON escapes anything, lone surrogates and NUL included
numbers = (st.integers(-5, 5) | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats() | st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, -0.0]))
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(any_text, inner, max_size=2), max_leaves=4)

names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,15}\Z")
durations = st.from_regex(r"\A\s?-?[0-9]{1,5}(\.[0-9]{1,3})?\s?(ms|s|m|h|d)?\Z")
iso_times = st.builds(
    lambda dt, form: dt.strftime(form),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
                     "%Y-%m-%dT%H:%M:%S.%f+05:30", "%Y-%m-%d %H:%M:%S-12:00"]),
)
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z")
commands = st.text(min_size=1, max_size=30).filter(
    lambda c: c.strip() and "\0" not in c and not re.search("[\ud800-\udfff]", c))

# Values that are surely valid (an input made of them only must be accepted) ...
valid = {
    "id": names,
    "max_retries": st.integers(0, 2**31 - 1),
    "priority": st.integers(-(2**31), 2**31 - 1),
    "queue": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"),
    "run_at": st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    "delay": st.integers(0, 10**6) | st.floats(0, 86400)
    | st.from_regex(r"\A[0-9]{1,4}(ms|s|m|h)\Z"),
    "timeout": st.integers(1, 10**6) | st.floats(0.001, 86400),
    "cwd": st.from_regex(r"\A/[a-z0-9/]{0,12}\Z"),
    "env": st.dictionaries(env_names, st.text(max_size=8).filter(
        lambda v: "\0" not in v and not re.search("[\ud800-\udfff]", v)), max_size=3),
    "unique_key": st.text(min_size=1, max_size=10).filter(
        lambda v: "\0" not in v and not re.search("[\ud800-\udfff]", v)),
}
# ... and values of every kind, most of them wrong.
odd = {
    "id": names | any_text | numbers,
    "command": commands | any_text | json_values,
    "max_retries": numbers | durations,
    "priority": numbers | any_text,
    "queue": names | any_text | numbers,
    "run_at": iso_times | any_text | numbers,
    "delay": durations | numbers | any_text,
    "timeout": durations | numbers | any_text,
    "cwd": valid["cwd"] | any_text,
    "env": st.dictionaries(env_names | any_text, any_text | numbers, max_size=2) | json_values,
    "unique_key": any_text | numbers,
    "state": st.sampled_from(["pending", "completed"]) | any_text,
    "attempts": st.sampled_from([0, 0.0, 1]) | numbers,
    "created_at": iso_times | any_text,
    "updated_at": iso_times,
}

valid_specs = st.fixed_dictionaries({"command": commands},
                                    optional={k: v for k, v in valid.items()})
odd_specs = st.dictionaries(st.sampled_from(FIELDS) | any_text, json_values, max_size=4) | \
    st.fixed_dictionaries({"command": odd["command"]},
                          optional={k: v for k, v in odd.items() if k != "command"}) | json_values

FLAG_NAMES = {"max_retries": "--max-retries", "priority": "--priority", "queue": "--queue",
              "delay": "--delay", "run_at": "--run-at", "timeout": "--timeout", "cwd": "--cwd",
              "unique_key": "--unique-key"}
valid_flags = st.fixed_dictionaries({}, optional={
    "max_retries": st.integers(0, 100).map(str),
    "priority": st.integers(-(2**31), 2**31 - 1).map(str),
    "queue": valid["queue"],
    "timeout": st.from_regex(r"\A[1-9][0-9]{0,3}(ms|s|m|h)?\Z"),
    "cwd": st.sampled_from(["/", "/srv/app", "rel/dir", "."]),
    "unique_key": valid["unique_key"].filter(lambda v: not re.search("[\ud800-\udfff]", v)),
    "env": st.lists(st.tuples(env_names, arg_text.filter(
        lambda v: not re.search("[\ud800-\udfff]", v))), max_size=2),
}) | st.fixed_dictionaries({}, optional={"delay": st.from_regex(r"\A[0-9]{1,4}(s|m)?\Z")})
odd_flags = st.fixed_dictionaries({}, optional={
    **{name: arg_text | durations | st.integers().map(str) for name in FLAG_NAMES},
    "run_at": iso_times | arg_text,
    "env": st.lists(st.tuples(arg_text, arg_text), max_size=2),
})


@st.composite
def requests(draw):
    """(how the jobs are given, the jobs, the flags, whether all of it is surely valid)."""
    must_accept = draw(st.booleans())
    spec_strategy = valid_specs if must_accept else (valid_specs | odd_specs)
    flags = draw(valid_flags if must_accept else (valid_flags | odd_flags))
    form = draw(st.sampled_from(["argument", "array", "stdin", "file"]))
    count = 1 if form in ("argument", "stdin") else draw(st.integers(1, 3))
    specs = [draw(spec_strategy) for _ in range(count)]
    if must_accept:
        seen: set[str] = set()  # ids unique within the input, and new to the queue
        for spec in specs:
            if "id" in spec:
                # not drawn: a replayed example must still name a job the queue has not seen
                spec["id"] = f"{spec['id'][:100]}.{secrets.token_hex(6)}"
                seen.add(spec["id"])
            if "unique_key" in spec or "unique_key" in flags:
                spec.pop("unique_key", None)
                flags.pop("unique_key", None)
            if "run_at" in spec and "delay" in flags:
                flags.pop("delay")  # run_at wins silently; tested for itself elsewhere
    return form, specs, flags, must_accept


def command_line(form: str, specs: list, flags: dict, tmp_path) -> tuple[list[str], str]:
    args = ["enqueue", "--json"]
    for name, value in flags.items():
        if name == "env":
            args += [f"--env={n}={v}" for n, v in value]
        else:
            args.append(f"{FLAG_NAMES[name]}={value}")  # '=': a value may start with '-'
    text = json.dumps(specs[0] if form in ("argument", "stdin") else specs)
    if form == "argument":
        return [*args, text], ""
    if form == "stdin":
        return [*args, "-"], text
    if form == "array":
        return [*args, text], ""
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in specs), encoding="utf-8")
    return [*args, "--file", str(path)], ""


# -- what "stored exactly" means ----------------------------------------------------------------

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def seconds(value) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.fullmatch(value)
    return float(match.group(1)) * _UNIT[match.group(2)]


def epoch(text: str) -> float:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merged(spec: dict, flags: dict, cwd) -> dict:
    """The job the user asked for: flags win over the JSON, except --env, which adds to it."""
    job = dict(spec)
    for name, value in flags.items():
        if name == "env":
            if value:
                own = spec.get("env") if isinstance(spec.get("env"), dict) else {}
                job["env"] = {**own, **dict(value)}
        elif name in ("max_retries", "priority"):
            job[name] = int(value)
        elif name == "cwd":
            job["cwd"] = os.path.abspath(os.path.join(cwd, value))
        else:
            job[name] = value
    return job


def assert_stored_exactly(asked: dict, stored: dict, cwd) -> None:
    def want(name, default=None):
        value = asked.get(name)
        return default if value is None else value

    assert stored["state"] == "pending" and stored["attempts"] == 0
    assert stored["command"] == asked["command"]
    if asked.get("id") is not None:
        assert stored["id"] == asked["id"]
    assert stored["max_retries"] == want("max_retries", DEFAULT_MAX_RETRIES)
    assert stored["priority"] == want("priority", 0)
    assert stored["queue"] == want("queue", "default")
    assert stored["cwd"] == want("cwd", str(cwd))
    assert stored["env"] == want("env", {})
    assert stored["unique_key"] == want("unique_key")
    timeout = want("timeout")
    assert stored["timeout"] == (None if timeout is None else seconds(timeout))
    created = epoch(stored["created_at"])
    if want("run_at") is not None:
        assert stored["next_run_at"] == iso(epoch(asked["run_at"]))
    else:
        delay = seconds(want("delay", 0))
        gap = epoch(stored["next_run_at"]) - created
        assert delay - 1 <= gap <= delay + 1, (delay, gap)
    # And nothing a rule forbids got in under another guise.
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}", stored["id"])
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", stored["queue"])
    assert stored["timeout"] is None or 0 < stored["timeout"] and math.isfinite(stored["timeout"])


# -- the property -------------------------------------------------------------------------------


def test_enqueue_stores_exactly_or_refuses_cleanly(qc, tmp_path):
    # PostgreSQL calls cost about twice as much (psycopg's import, a connection): half as many.
    examples = EXAMPLES if "://" not in qc.db else EXAMPLES // 2
    queue = {"jobs": qc.jobs()}  # what the queue held after the previous example

    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(request=requests())
    def check(request):
        queue["jobs"] = enqueue_and_check(qc, tmp_path, request, queue["jobs"])

    check()


def enqueue_and_check(qc, tmp_path, request, before: list[dict]) -> list[dict]:
    form, specs, flags, must_accept = request
    args, stdin = command_line(form, specs, flags, tmp_path)
    result = qc.run(*args, input=stdin)
    shown = f"queuectl {args!r} <<< {stdin!r}: exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, shown
    if result.returncode != 0:
        assert not must_accept, shown
        assert_one_error_line(result, 2)
        after = qc.jobs()
        assert after == before, f"refused, yet the queue changed: {shown}"
        return after
    answers = json.loads(result.stdout)
    listed = qc.jobs()
    after = {job["id"]: job for job in listed}
    new_ids = set(after) - {job["id"] for job in before}
    assert len(answers) == len(specs), shown
    assert new_ids == {a["id"] for a in answers if not a["duplicate"]}, shown
    for spec, answer in zip(specs, answers, strict=True):
        asked = merged(spec, flags, qc.cli.cwd)
        if answer["duplicate"]:
            assert after[answer["id"]]["unique_key"] == asked["unique_key"], shown
            continue
        try:
            assert_stored_exactly(asked, after[answer["id"]], qc.cli.cwd)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nasked {asked!r}\nstored {after[answer['id']]!r}\n"
                                 f"{shown}") from None
    return listed
