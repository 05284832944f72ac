import pytest

from queuectl.config import KEYS, Settings, get_key, parse_value
from queuectl.errors import InputError


def test_defaults():
    assert dict(Settings().items()) == {
        "max-retries": 3,
        "backoff-base": 2.0,
        "lease-seconds": 15.0,
        "heartbeat-seconds": 5.0,
        "poll-seconds": 1.0,
        "max-crashes": 3,
        "backoff-jitter": 0.0,
        "job-timeout": 0.0,
        "output-limit": 1048576,
        "retention": 0.0,
    }


def test_defaults_are_valid_and_keep_their_type():
    for name, key in KEYS.items():
        value = parse_value(name, str(key.default))
        assert value == key.default
        assert type(value) is key.kind, name
    Settings().check_timing()


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("max-retries", "5", 5),
        ("max-retries", " 7 ", 7),
        ("max-retries", 0, 0),
        ("max-crashes", "1", 1),
        ("backoff-base", "1.5", 1.5),
        ("backoff-base", "1", 1.0),
        ("backoff-base", 3, 3.0),
        ("lease-seconds", "30s", 30.0),
        ("lease-seconds", "1m", 60.0),
        ("lease-seconds", "2", 2.0),
        ("lease-seconds", 20, 20.0),
        ("heartbeat-seconds", "250ms", 0.25),
        ("heartbeat-seconds", "0.2", 0.2),
        ("poll-seconds", "10ms", 0.01),
        ("poll-seconds", "2h", 7200.0),
    ],
)
def test_accepted_values(name, text, expected):
    value = parse_value(name, text)
    assert value == pytest.approx(expected)
    assert type(value) is KEYS[name].kind


@pytest.mark.parametrize(
    "name, text",
    [
        ("max-retries", "5.0"),
        ("max-retries", "five"),
        ("max-retries", ""),
        ("max-retries", True),
        ("max-retries", 2.5),
        ("max-retries", "-1"),
        ("max-crashes", "0"),
        ("backoff-base", "0.5"),
        ("backoff-base", "2s"),
        ("backoff-base", "inf"),
        ("backoff-base", "nan"),
        ("backoff-base", "abc"),
        ("lease-seconds", "1"),
        ("lease-seconds", "1.9s"),
        ("lease-seconds", "-5s"),
        ("lease-seconds", "5 minutes"),
        ("lease-seconds", "inf"),
        ("heartbeat-seconds", "0.1"),
        ("heartbeat-seconds", "100ms"),
        ("poll-seconds", "5ms"),
        ("poll-seconds", None),
    ],
)
def test_rejected_values_name_the_key(name, text):
    with pytest.raises(InputError) as caught:
        parse_value(name, text)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", list(KEYS))
def test_absurdly_large_values_are_refused(name):
    # max-retries 10**30 used to be stored, then made every enqueue fail: SQLite cannot hold
    # the integer. A lease of 10**300 seconds made every processing job unprintable.
    with pytest.raises(InputError, match=repr(name)):
        parse_value(name, "1" + "0" * 30)


def test_unknown_key():
    for call in (lambda: get_key("max_retries"), lambda: parse_value("retries", "3")):
        with pytest.raises(InputError) as caught:
            call()
        assert "unknown config key" in str(caught.value)
        assert "max-retries" in str(caught.value)  # the known keys are listed


def test_settings_parse_stored_text_and_ignore_unknown_keys():
    settings = Settings({"lease-seconds": "30.0", "max-retries": "5", "retired-key": "x"})
    assert settings["lease-seconds"] == 30.0
    assert settings["max-retries"] == 5
    assert settings["backoff-base"] == 2.0
    with pytest.raises(KeyError):
        settings["retired-key"]


def test_settings_refuse_a_corrupt_stored_value():
    with pytest.raises(InputError, match="max-retries"):
        Settings({"max-retries": "lots"})


@pytest.mark.parametrize(
    "heartbeat, lease, ok",
    [("5", "10", True), ("5", "15", True), ("5.01", "10", False), ("5", "9.99", False),
     ("1", "2", True), ("1.5", "2", False)],
)
def test_heartbeat_must_be_at_most_half_the_lease(heartbeat, lease, ok):
    settings = Settings({"heartbeat-seconds": heartbeat, "lease-seconds": lease})
    if ok:
        settings.check_timing()
    else:
        with pytest.raises(InputError, match=r"heartbeat-seconds \(.*\) must be at most half"):
            settings.check_timing()


def test_every_key_has_help_and_a_sane_kind():
    for name, key in KEYS.items():
        assert key.name == name
        assert key.help
        assert key.kind in (int, float)
        assert key.default >= key.minimum
