import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.retry import backoff_delay, is_exhausted


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
    from queuectl.retry import MAX_DELAY_SECONDS

    assert MAX_DELAY_SECONDS == 365 * 86400
    assert backoff_delay(2, 1024) == MAX_DELAY_SECONDS  # 2.0 ** 1024 overflows a float
    assert backoff_delay(1000, 5) == MAX_DELAY_SECONDS
