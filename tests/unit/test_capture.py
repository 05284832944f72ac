import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from queuectl.capture import OutputCapture


def marker(dropped: int) -> bytes:
    return f"\n[... queuectl: {dropped} bytes of output cut here ...]\n".encode()


def test_output_under_the_limit_is_kept_whole():
    capture = OutputCapture(100)
    capture.feed(b"hello ")
    capture.feed(b"world\n")
    assert capture.getvalue() == b"hello world\n"
    assert capture.dropped == 0


def test_output_exactly_at_the_limit_is_kept_whole():
    capture = OutputCapture(10)
    capture.feed(b"0123456789")
    assert capture.getvalue() == b"0123456789"


def test_head_and_tail_are_kept_with_a_marker_counting_what_was_cut():
    capture = OutputCapture(10)
    capture.feed(b"ABCDE" + b"-" * 1000 + b"VWXYZ")
    assert capture.dropped == 1000
    assert capture.getvalue() == b"ABCDE" + marker(1000) + b"VWXYZ"


def test_odd_limit_gives_the_extra_byte_to_the_tail():
    capture = OutputCapture(5)
    capture.feed(b"abcdefghij")
    assert capture.getvalue() == b"ab" + marker(5) + b"hij"


def test_zero_limit_keeps_nothing_but_says_how_much():
    capture = OutputCapture(0)
    capture.feed(b"x" * 42)
    assert capture.getvalue() == marker(42)


def test_negative_limit_is_treated_as_zero():
    capture = OutputCapture(-5)
    capture.feed(b"abc")
    assert capture.getvalue() == marker(3)


@given(data=st.binary(max_size=300), limit=st.integers(0, 64), cuts=st.lists(st.integers(0, 300)))
def test_chunking_does_not_change_the_result(data, limit, cuts):
    whole = OutputCapture(limit)
    whole.feed(data)
    pieces = OutputCapture(limit)
    bounds = sorted({0, len(data), *[c for c in cuts if c <= len(data)]})
    for start, end in zip(bounds, bounds[1:], strict=False):
        pieces.feed(data[start:end])
    assert pieces.getvalue() == whole.getvalue()
    if len(data) <= limit:
        assert whole.getvalue() == data
    else:
        head = limit // 2
        tail = limit - head
        assert whole.getvalue() == data[:head] + marker(len(data) - limit) + data[len(data) - tail:]


def _feed_and_measure(total: int, limit: int, chunk: int) -> tuple[OutputCapture, int]:
    """Feed `total` bytes in chunks (first chunk F..., last L..., m... between); return the
    capture and the peak memory allocated while feeding."""
    first, middle, last = b"F" * chunk, b"m" * chunk, b"L" * chunk
    capture = OutputCapture(limit)
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fed = 0
        while fed < total:
            capture.feed(first if fed == 0 else last if fed + chunk >= total else middle)
            fed += chunk
            assert len(capture.head) + len(capture.tail) <= limit
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return capture, peak - baseline


def test_memory_stays_bounded_when_fed_50_mb():
    limit, chunk, mb = 1 << 20, 64 * 1024, 1024 * 1024
    capture, peak_50 = _feed_and_measure(50 * mb, limit, chunk)
    _, peak_5 = _feed_and_measure(5 * mb, limit, chunk)
    # The buffers hold `limit`; a bytearray briefly over-allocates while the tail is trimmed.
    assert peak_50 < 2 * limit + 4 * chunk
    assert peak_50 - peak_5 < chunk  # ten times the output, no more memory
    total = 50 * mb
    assert capture.total == total
    assert capture.dropped == total - limit
    value = capture.getvalue()
    assert value.startswith(b"F" * chunk + b"m" * (limit // 2 - chunk))
    assert value.endswith(b"L" * chunk)
    assert marker(total - limit) in value
    assert len(value) == limit + len(marker(total - limit))


def test_last_line():
    capture = OutputCapture(100)
    capture.feed(b"first\nsecond\nthe end\n\n")
    assert capture.last_line() == "the end"
    assert OutputCapture(100).last_line() == ""


def test_last_line_is_truncated_and_tolerates_bad_utf8():
    capture = OutputCapture(1000)
    capture.feed(b"\xff\xfe" + b"x" * 100)
    line = capture.last_line(width=20)
    assert line == "\ufffd\ufffd" + "x" * 18


def test_last_line_spanning_head_and_tail_is_whole():
    # Nothing was cut, but the output is longer than the head: the last line starts in the
    # head and ends in the tail. The error message quotes it, so it must be whole.
    capture = OutputCapture(1000)
    capture.feed(b"x" * 450 + b"\n" + b"error: the final line " * 5)
    assert capture.dropped == 0
    assert capture.last_line() == ("error: the final line " * 5).strip()


def test_last_line_comes_from_the_tail_after_a_cut():
    capture = OutputCapture(40)
    capture.feed(b"head line\n" + b"." * 100 + b"\nerror: boom\n")
    assert capture.dropped > 0
    assert capture.last_line() == "error: boom"
