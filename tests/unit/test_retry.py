import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuectl.config import KEYS
from queuectl.retry import MAX_DELAY_SECONDS, backoff_delay, is_exhausted, jittered


def test_base_2_gives_the_seeds_delays():
    assert [backoff_delay(2, n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]


def test_base_one_and_a_half():
    assert [backoff_delay(1.5, n) for n in (1, 2, 3)] == pytest.approx([1.5, 2.25, 3.375])


def test_base_1_retries_every_second():
    assert [backoff_delay(1, n) for n in (1, 5, 50)] == [1.0, 1.0, 1.0]


def test_delay_is_a_float_even_for_int_base():
    assert isinstance(backoff_delay(2, 3), float)


@pytest.mark.parametrize(
    "attempts, exhausted",
    [(0, False), (1, False), (2, False), (3, False), (4, True), (5, True)],
)
def test_max_retries_3_allows_four_runs(attempts, exhausted):
    assert is_exhausted(attempts, 3) is exhausted


def test_max_retries_0_allows_one_run():
    assert is_exhausted(0, 0) is False
    assert is_exhausted(1, 0) is True


def test_runs_until_dead_equals_max_retries_plus_one():
    for max_retries in range(6):
        runs = 0
        while True:
            runs += 1
            if is_exhausted(runs, max_retries):
                break
        assert runs == max_retries + 1


@given(
    base=st.floats(min_value=1, max_value=100, allow_nan=False),
    attempts=st.integers(min_value=0, max_value=5000),
)
def test_backoff_is_monotonic_in_attempts(base, attempts):
    assert backoff_delay(base, attempts) <= backoff_delay(base, attempts + 1)


@given(
    base=st.floats(min_value=1, max_value=1e6, allow_nan=False),
    attempts=st.integers(min_value=0, max_value=10**6),
)
def test_backoff_is_always_a_finite_number(base, attempts):
    # A worker computes this for whatever backoff-base and max_retries a user configured;
    # an exception here would crash the worker in the middle of recording a failure.
    delay = backoff_delay(base, attempts)
    assert 1 <= delay < float("inf")


def test_huge_delays_are_capped_at_a_year():
    assert MAX_DELAY_SECONDS == 365 * 86400
    assert backoff_delay(2, 1024) == MAX_DELAY_SECONDS  # 2.0 ** 1024 overflows a float
    assert backoff_delay(1000, 5) == MAX_DELAY_SECONDS


# -- properties of the formula, over every value `config set` accepts ----------------------

bases = st.floats(min_value=KEYS["backoff-base"].minimum, max_value=KEYS["backoff-base"].maximum,
                  allow_nan=False) | st.integers(1, 10)
jitters = st.floats(min_value=0, max_value=KEYS["backoff-jitter"].maximum)
draws = st.floats(min_value=0, max_value=1, exclude_max=True)


@settings(max_examples=500)
@given(base=bases, attempts=st.integers(min_value=0, max_value=2**40))
def test_delay_is_base_to_the_attempts_or_the_cap(base, attempts):
    delay = backoff_delay(base, attempts)
    exponent = attempts * math.log(base)  # log of base ** attempts, computed without overflow
    cap = math.log(MAX_DELAY_SECONDS)
    if exponent < cap - 1e-9:
        assert math.isclose(math.log(delay), exponent, rel_tol=1e-9, abs_tol=1e-9)
    elif exponent > cap + 1e-9:
        assert delay == MAX_DELAY_SECONDS
    assert 1 <= delay <= MAX_DELAY_SECONDS


@settings(max_examples=300)
@given(base=st.integers(1, 6), attempts=st.integers(0, 10))
def test_small_delays_are_exact(base, attempts):
    assert backoff_delay(base, attempts) == min(float(base**attempts), MAX_DELAY_SECONDS)


@settings(max_examples=500)
@given(delay=st.floats(0, MAX_DELAY_SECONDS), jitter=jitters, draw=draws)
def test_jitter_stays_within_its_fraction(delay, jitter, draw):
    spread = jittered(delay, jitter, draw)
    slack = 1e-9 * max(delay, 1)
    assert delay * (1 - jitter) - slack <= spread <= delay * (1 + jitter) + slack
    assert spread >= 0 and math.isfinite(spread)


@given(delay=st.floats(0, MAX_DELAY_SECONDS), draw=draws)
def test_no_jitter_keeps_the_delay_exact(delay, draw):
    assert jittered(delay, 0.0, draw) == delay


@given(delay=st.floats(1, MAX_DELAY_SECONDS), jitter=st.floats(0.01, 1))
def test_jitter_grows_with_the_draw(delay, jitter):
    low, mid, high = (jittered(delay, jitter, d) for d in (0.0, 0.5, 0.999))
    assert low < mid < high
    assert math.isclose(mid, delay)
