import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuectl.cli import parse_jobs_text
from queuectl.errors import InputError


def test_one_object():
    assert parse_jobs_text('{"command": "echo hi"}') == [{"command": "echo hi"}]


def test_a_pretty_printed_object():
    text = '{\n  "id": "a",\n  "command": "x"\n}\n'
    assert parse_jobs_text(text) == [{"id": "a", "command": "x"}]


def test_an_array():
    assert parse_jobs_text('[{"command": "a"}, {"command": "b"}]') == [
        {"command": "a"}, {"command": "b"}]


def test_json_lines():
    text = '{"command": "a"}\n{"command": "b"}\n\n{"command": "c"}\n'
    assert parse_jobs_text(text) == [{"command": "a"}, {"command": "b"}, {"command": "c"}]


def test_json_lines_with_crlf():
    assert parse_jobs_text('{"command": "a"}\r\n{"command": "b"}\r\n') == [
        {"command": "a"}, {"command": "b"}]


def test_non_objects_are_passed_on_for_validation():
    # parse_job_spec names what is wrong with them, with the job's number.
    assert parse_jobs_text("[1, 2]") == [1, 2]
    assert parse_jobs_text('"echo"') == ["echo"]


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_empty_input(text):
    with pytest.raises(InputError, match="the input is empty"):
        parse_jobs_text(text)


def test_empty_array():
    with pytest.raises(InputError, match="holds no jobs"):
        parse_jobs_text("[]")


def test_invalid_single_line_names_line_and_column():
    with pytest.raises(InputError, match=r"invalid JSON: .* at line 1 column 2"):
        parse_jobs_text("{bad")


def test_json_lines_error_names_the_line():
    text = '{"command": "a"}\n{"command": "b"}\n{"command": oops}\n'
    with pytest.raises(InputError, match=r"invalid JSON on line 3: .* column 13"):
        parse_jobs_text(text)


def test_json_lines_error_line_counts_blank_lines():
    # The number must point at the line in the user's file, blank lines included.
    text = '\n{"command": "a"}\n\n{"command": "b"}\n\n{"command": oops}\n'
    with pytest.raises(InputError, match=r"line 6\b"):
        parse_jobs_text(text)


def test_error_in_pretty_printed_json_points_at_the_real_place():
    # Not JSON Lines at all: the error must be the document's, not "line 1: {" .
    text = '{\n  "id": "a",\n  "command": "x",\n}\n'
    with pytest.raises(InputError, match=r"line 4 column 1"):
        parse_jobs_text(text)


@pytest.mark.parametrize("bad_line", [
    '{"command": "b"} x',  # a value, then more on the same line
    '{"command": "b"} {"command": "c"}',  # two values on one line
    '{"command": "b"',  # a value that does not end on its line
])
def test_json_lines_take_exactly_one_value_per_line(bad_line):
    """The fast decoding of JSON Lines is as strict as json.loads line by line."""
    text = '{"command": "a"}\n' + bad_line + '\n{"command": "d"}\n'
    with pytest.raises(InputError, match="invalid JSON on line 2"):
        parse_jobs_text(text)


def test_json_lines_may_be_indented_or_trail_json_whitespace():
    text = '  {"command": "a"}\t\n\t{"command": "b"}  \r\n'
    assert parse_jobs_text(text) == [{"command": "a"}, {"command": "b"}]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(['{"command": "x"}', '{"a": [1', "2]}", '"s"', "1 2", "[]", "}", "{}",
                     " ", "\t", "null", '{"command": "y"} ', "\x0c", "tru", "1e5"]),
    st.text(alphabet='{}[]":, 1a\t', max_size=8)), min_size=2, max_size=6))
def test_json_lines_decode_as_json_loads_does_line_by_line(lines):
    text = "\n".join(lines)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if whole is not None or sum(1 for line in text.splitlines() if line.strip()) < 2:
        return  # not the JSON Lines path
    try:
        expected = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        with pytest.raises(InputError):
            parse_jobs_text(text)
        return
    assert parse_jobs_text(text) == expected
