import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuectl.errors import InputError
from queuectl.models import (
    READ_ONLY_FIELDS,
    SETTABLE_FIELDS,
    STATES,
    Job,
    NewJob,
    parse_job_spec,
    validate_state,
)
from queuectl.timeutil import iso, parse_iso

OK = {"command": "echo hi"}


def rejects(spec, field, index=None):
    """parse_job_spec refuses `spec` with an InputError whose message names `field`."""
    with pytest.raises(InputError) as caught:
        parse_job_spec(spec, index)
    message = str(caught.value)
    assert field in message, f"{field!r} not named in {message!r}"
    return message


@pytest.mark.parametrize("value", [None, [], ["echo"], "echo hi", 3, True])
def test_a_job_must_be_an_object(value):
    rejects(value, "JSON object")


def test_unknown_field_is_named():
    message = rejects({**OK, "comand": "x"}, "'comand'")
    assert "known fields" in message


@pytest.mark.parametrize("value", ["processing", "completed", "dead", "", None, 0])
def test_state_other_than_pending(value):
    rejects({**OK, "state": value}, "state")


@pytest.mark.parametrize("value", [1, 3, -1, "0", None])
def test_attempts_other_than_zero(value):
    rejects({**OK, "attempts": value}, "attempts")


@pytest.mark.parametrize(
    "spec",
    [{}, {"command": None}, {"command": 5}, {"command": ["ls"]}, {"command": ""},
     {"command": "   \n\t"}, {"command": "echo \0 hi"}],
)
def test_command_rejections(spec):
    rejects(spec, "command")


@pytest.mark.parametrize(
    "value",
    [5, "", "-leading-dash", ".hidden", "has space", "a/b", "x" * 129, "é", "a\nb"],
)
def test_id_rejections(value):
    rejects({**OK, "id": value}, "id")


@pytest.mark.parametrize("field, value", [("id", "job1\n"), ("queue", "builds\n"),
                                          ("env", {"NAME\n": "x"})])
def test_a_final_newline_does_not_slip_past_a_name_rule(field, value):
    # `$` matches before a final newline: "job1\n" was stored as an id nobody could type.
    rejects({**OK, field: value}, field)


@pytest.mark.parametrize("field, value", [
    ("command", "echo \ud800"), ("unique_key", "k\udfff"), ("cwd", "/srv/\udc80"),
    ("env", {"A": "\ud800"}), ("run_at", "2026-01-01T00:00:00\ud800"), ("id", "a\ud800"),
])
def test_lone_surrogates_are_refused(field, value):
    # JSON "\\ud800" decodes to a lone surrogate: no UTF-8 form, so SQLite raised
    # UnicodeEncodeError (a traceback) when it was stored.
    rejects({**OK, field: value}, field)


@pytest.mark.parametrize("field", ["timeout", "delay"])
def test_durations_are_ascii_digits(field):
    rejects({**OK, field: "\u0663s"}, field)  # ARABIC-INDIC DIGIT THREE


@pytest.mark.parametrize("value", ["a", "job1", "A.b_c:d@e+f-g", "9" * 128])
def test_id_accepted(value):
    assert parse_job_spec({**OK, "id": value}).id == value


@pytest.mark.parametrize("value", [3, "-q", "has space", "q/x", "x" * 65])
def test_queue_rejections(value):
    rejects({**OK, "queue": value}, "queue")


@pytest.mark.parametrize("value", [5, "tomorrow", "2026-13-01T00:00:00Z", "2026-11-27T10:00:00ZZ"])
def test_run_at_rejections(value):
    rejects({**OK, "run_at": value}, "run_at")


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+12:00", "9999-12-31T23:59:59-12:00"])
def test_run_at_that_cannot_be_shown_as_a_date_is_refused(value):
    # Stored, it would make every `list` and `show` of the queue fail while rendering it.
    rejects({**OK, "run_at": value}, "run_at")


@pytest.mark.parametrize(
    "value",
    [[], "PATH=/bin", ["A", "b"], 0, False, {"1BAD": "x"}, {"A-B": "x"}, {"A": 1},
     {"A": None}, {"A": "nul\0"}],
)
def test_env_rejections(value):
    rejects({**OK, "env": value}, "env")


@pytest.mark.parametrize("value", [1, "relative/dir", "./x", ""])
def test_cwd_rejections(value):
    rejects({**OK, "cwd": value}, "cwd")


@pytest.mark.parametrize(
    "value",
    [0, "0s", -1, -0.5, "-1s", True, False, "soon", [], {}, float("inf"), float("nan"), "1h30m",
     pytest.param(10**400, id="10**400"), pytest.param("9" * 400, id="'9'*400")],
)
def test_timeout_rejections(value):
    rejects({**OK, "timeout": value}, "timeout")


@pytest.mark.parametrize(
    "value", [-1, "-5s", True, "later", float("inf"), pytest.param(10**400, id="10**400"), [5]]
)
def test_delay_rejections(value):
    rejects({**OK, "delay": value}, "delay")


@pytest.mark.parametrize("field", ["timeout", "delay"])
def test_durations_longer_than_a_century_are_refused(field):
    rejects({**OK, field: "36600d"}, field)
    rejects({**OK, field: 10**12}, field)


@pytest.mark.parametrize("value", ["", 5, ["k"]])
def test_unique_key_rejections(value):
    rejects({**OK, "unique_key": value}, "unique_key")


@pytest.mark.parametrize("value", [1.5, "1", True, [1], 2**63, -(2**63)])
def test_priority_rejections(value):
    rejects({**OK, "priority": value}, "priority")


@pytest.mark.parametrize("value", [-1, 1.0, "3", False, 2**63])
def test_max_retries_rejections(value):
    rejects({**OK, "max_retries": value}, "max_retries")


def test_errors_in_a_batch_name_the_job():
    message = rejects({"command": ""}, "command", index=2)
    assert message.startswith("job #3: ")


def test_a_single_job_error_has_no_job_number():
    assert not rejects({"command": ""}, "command").startswith("job #")


def test_minimal_spec_gets_defaults():
    assert parse_job_spec({"command": "make"}) == NewJob(
        id=None, command="make", max_retries=None, priority=0, queue="default", run_at=None,
        delay=None, timeout=None, cwd=None, env={}, unique_key=None,
    )


def test_full_spec_round_trips():
    spec = {
        "id": "build-42",
        "command": "make -j2 test",
        "max_retries": 5,
        "priority": -3,
        "queue": "builds",
        "run_at": "2026-11-27T10:00:00Z",
        "delay": "90s",
        "timeout": "2m",
        "cwd": "/srv/app",
        "env": {"CI": "1", "_X": ""},
        "unique_key": "build:main",
    }
    job = parse_job_spec(spec)
    assert job == NewJob(
        id="build-42", command="make -j2 test", max_retries=5, priority=-3, queue="builds",
        run_at=parse_iso("2026-11-27T10:00:00Z"), delay=90.0, timeout=120.0, cwd="/srv/app",
        env={"CI": "1", "_X": ""}, unique_key="build:main",
    )
    assert iso(job.run_at) == spec["run_at"]
    assert job.env is not spec["env"]  # a copy: later changes to the input do not leak in


def test_seconds_accept_numbers_and_durations():
    assert parse_job_spec({**OK, "timeout": 2}).timeout == 2.0
    assert parse_job_spec({**OK, "timeout": 0.25}).timeout == 0.25
    assert parse_job_spec({**OK, "timeout": "250ms"}).timeout == 0.25
    assert parse_job_spec({**OK, "delay": 0}).delay == 0.0
    assert parse_job_spec({**OK, "delay": "1h"}).delay == 3600.0


def test_null_means_default():
    job = parse_job_spec({"command": "x", "id": None, "max_retries": None, "priority": None,
                          "queue": None, "run_at": None, "timeout": None, "env": None})
    assert (job.id, job.max_retries, job.priority, job.queue, job.env) == (
        None, None, 0, "default", {})


def test_the_published_job_format_is_accepted():
    # A job as the seed prints it: the read-only fields describe a new job, so it is accepted.
    spec = {"id": "job1", "command": "sleep 2", "state": "pending", "attempts": 0,
            "max_retries": 3, "created_at": "2025-11-04T10:30:00Z",
            "updated_at": "2025-11-04T10:30:00Z"}
    job = parse_job_spec(spec)
    assert (job.id, job.command, job.max_retries) == ("job1", "sleep 2", 3)


def test_field_lists_are_disjoint_and_cover_newjob():
    assert not set(SETTABLE_FIELDS) & set(READ_ONLY_FIELDS)
    assert set(SETTABLE_FIELDS) - {"delay"} <= set(Job._fields)
    assert set(SETTABLE_FIELDS) == set(NewJob._fields)


def test_validate_state():
    for state in STATES:
        assert validate_state(state) == state
    with pytest.raises(InputError, match="unknown state 'running'"):
        validate_state("running")


def test_job_to_dict_renders_times_and_hides_what_does_not_apply():
    job = Job(id="a", command="x", state="pending", attempts=0, max_retries=3,
              created_at=0.0, updated_at=1.0, run_at=2.0, lease_expires_at=99.0)
    d = job.to_dict()
    assert (d["created_at"], d["updated_at"], d["next_run_at"]) == (
        "1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", "1970-01-01T00:00:02Z")
    assert d["lease_expires_at"] is None  # only a processing job has a lease
    job.state = "completed"
    assert job.to_dict()["next_run_at"] is None


# -- property: whatever JSON a user sends, the answer is a NewJob or an InputError ---------

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
                | st.floats() | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
field_values = (
    json_values
    | st.from_regex(r"\A-?\d{1,12}(\.\d{1,3})?(ms|s|m|h|d)?\Z")
    | st.datetimes().map(lambda d: d.isoformat() + st_choice_zone(d))
    | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,10}\Z")
    | st.dictionaries(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,5}\Z"), st.text(max_size=5),
                      max_size=2)
)


def st_choice_zone(d):
    return ("Z", "+05:30", "-12:00", "")[d.microsecond % 4]


spec_like = st.dictionaries(
    st.sampled_from(SETTABLE_FIELDS + READ_ONLY_FIELDS + ("bogus",)), field_values, max_size=6,
).flatmap(lambda d: st.sampled_from([d, {"command": "echo", **d}, {**d, "command": "echo"}]))


def _check_accepted(job: NewJob) -> None:
    assert isinstance(job.command, str) and job.command.strip() and "\0" not in job.command
    assert isinstance(job.priority, int) and -(2**31) <= job.priority < 2**31
    assert job.max_retries is None or 0 <= job.max_retries < 2**31
    for seconds in (job.delay, job.timeout):
        assert seconds is None or (0 <= seconds and math.isfinite(seconds))
    assert job.timeout is None or job.timeout > 0
    if job.run_at is not None:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", iso(job.run_at))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in job.env.items())


@settings(max_examples=400)
@given(json_values)
def test_any_json_value_gives_a_job_or_an_input_error(value):
    try:
        job = parse_job_spec(value)
    except InputError:
        return
    _check_accepted(job)


@settings(max_examples=600)
@given(spec_like)
def test_any_spec_like_object_gives_a_job_or_an_input_error(spec):
    try:
        job = parse_job_spec(spec)
    except InputError:
        return
    _check_accepted(job)


# -- property: a valid spec comes out exactly as it went in -------------------------------

valid_specs = st.fixed_dictionaries(
    {"command": st.text(min_size=1, max_size=20).filter(
        lambda c: c.strip() and "\0" not in c and not re.search("[\ud800-\udfff]", c))},
    optional={
        "id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}\Z"),
        "max_retries": st.integers(0, 2**31 - 1),
        "priority": st.integers(-(2**31), 2**31 - 1),
        "queue": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
        "delay": st.floats(0, 100 * 365 * 86400) | st.integers(0, 100 * 365 * 86400),
        "timeout": st.floats(1e-9, 100 * 365 * 86400),
        "env": st.dictionaries(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z"),
                               st.text(max_size=5).filter(
                                   lambda v: "\0" not in v
                                   and not re.search("[\ud800-\udfff]", v)), max_size=3),
        "cwd": st.text(max_size=10).map(lambda t: "/" + t).filter(
            lambda v: "\0" not in v and not re.search("[\ud800-\udfff]", v)),
        "unique_key": st.text(min_size=1, max_size=10).filter(
            lambda v: "\0" not in v and not re.search("[\ud800-\udfff]", v)),
    },
)


@settings(max_examples=300)
@given(valid_specs)
def test_a_valid_spec_is_taken_exactly_as_given(spec):
    job = parse_job_spec(spec)
    assert job.command == spec["command"]
    assert job.id == spec.get("id")
    assert job.max_retries == spec.get("max_retries")
    assert job.priority == spec.get("priority", 0)
    assert job.queue == spec.get("queue", "default")
    assert job.delay == spec.get("delay")
    assert job.timeout == spec.get("timeout")
    assert job.env == spec.get("env", {})
    assert job.cwd == spec.get("cwd")
    assert job.unique_key == spec.get("unique_key")


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                    st.text(max_size=6), st.sampled_from(["job-1", "q", "/tmp", "", " ",
                                                          "a\nb", "x\0", "1.5", "job 1",
                                                          "job-1 ", " job", "j\u00e9b",
                                                          "-job", "a" * 129, "b@h:1+2"]),
                    st.lists(st.integers(), max_size=2), st.just({}))


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(["id", "command", "queue", "priority", "max_retries",
                                        "cwd", "unique_key", "env", "delay", "comand"]),
                       _VALUES, max_size=5).map(lambda d: {"command": "true", **d}))
def test_the_fast_path_agrees_with_the_field_by_field_checks(spec):
    """_parse_plain gives the same NewJob the full checks give, or leaves the spec to them."""
    from queuectl import models

    fast = models._parse_plain(spec)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(models, "_parse_plain", lambda spec: None)
        try:
            full = parse_job_spec(spec)
        except InputError:
            full = None
    if fast is not None:
        assert fast == full


def test_ids_drawn_in_bulk_look_like_single_ones_and_differ():
    from queuectl.models import new_job_id, new_job_ids

    ids = list(new_job_ids(1000))
    assert len(ids) == 1000 == len(set(ids))
    single = new_job_id()
    assert all(len(i) == len(single) == 12 and int(i, 16) >= 0 for i in ids)
    assert list(new_job_ids(0)) == []
