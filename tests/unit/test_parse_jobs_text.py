import pytest

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
