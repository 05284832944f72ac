import json

from queuectl.output import message, print_json, shorten, table

COLUMNS = [("id", "ID"), ("state", "STATE"), ("error", "LAST ERROR"), ("n", "N")]


def test_table_aligns_columns_under_their_headers():
    rows = [{"id": "a", "state": "pending", "error": "boom", "n": 5},
            {"id": "long-id", "state": "dead", "error": "", "n": 12345}]
    assert table(rows, COLUMNS, right=("n",)).splitlines() == [
        "ID       STATE    LAST ERROR      N",
        "a        pending  boom            5",
        "long-id  dead                 12345",
    ]


def test_table_hides_a_column_empty_in_every_row():
    rows = [{"id": "a", "state": "pending", "error": None, "n": 0},
            {"id": "b", "state": "dead", "error": "", "n": 1}]
    out = table(rows, COLUMNS)
    assert "LAST ERROR" not in out
    assert out.splitlines()[0] == "ID  STATE    N"  # 0 is a value, not an empty cell


def test_table_treats_missing_keys_as_empty():
    out = table([{"id": "a"}, {"id": "b", "state": "x"}], COLUMNS)
    assert out.splitlines() == ["ID  STATE", "a", "b   x"]


def test_table_lines_carry_no_trailing_spaces():
    out = table([{"id": "a-long-one", "state": ""}, {"id": "b", "state": "s"}],
                [("state", "STATE"), ("id", "ID")])
    assert all(line == line.rstrip() for line in out.splitlines())


def test_table_with_nothing_to_show_is_empty():
    assert table([], COLUMNS) == ""
    assert table([{"id": None}], COLUMNS) == ""


def test_table_widths_follow_the_widest_cell_or_header():
    out = table([{"id": "x", "n": 1}], [("id", "IDENTIFIER"), ("n", "N")], right=("n",))
    assert out.splitlines() == ["IDENTIFIER  N", "x           1"]


def test_shorten():
    assert shorten(None, 10) == ""
    assert shorten("a  b\n\tc", 10) == "a b c"
    assert shorten("0123456789", 10) == "0123456789"
    assert shorten("0123456789abc", 10) == "012345678…"
    assert len(shorten("x" * 100, 10)) == 10


def test_print_json_writes_one_document_to_stdout_only(capsys):
    print_json({"a": [1, None], "b": "é"})
    out, err = capsys.readouterr()
    assert json.loads(out) == {"a": [1, None], "b": "é"}
    assert out.endswith("}\n")
    assert err == ""


def test_message_goes_to_stderr(capsys):
    message("hello")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "hello\n")
