"""The lazy parser: only the running command's parser is built, so the list of commands that
build_parser() knows must match the commands it can build."""

import argparse

import pytest

from queuectl import cli


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def test_every_command_is_listed_for_the_lazy_parser():
    assert _subcommands(cli.build_parser(None)) == list(cli.COMMANDS)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_a_known_command_builds_only_its_own_parser(command):
    assert _subcommands(cli.build_parser(command)) == [command]


def test_an_unknown_command_builds_all_for_the_error_message():
    assert _subcommands(cli.build_parser("bogus")) == list(cli.COMMANDS)


@pytest.mark.parametrize("argv, word", [
    (["--db", "x.db", "enqueue", "{}"], "enqueue"),
    (["status", "--json"], "status"),
    (["--help"], None),
    (["--db", "list"], None),
])
def test_the_command_word_skips_the_db_option(argv, word):
    assert cli._command_word(argv) == word


# -- the plain enqueue, read without argparse -------------------------------------------------

PLAIN = [
    ["enqueue", '{"command": "true"}'],
    ["--db", "q.db", "enqueue", "{}"],
    ["enqueue", "--db", "q.db", "--json", "-"],
    ["enqueue", "--file", "jobs.jsonl", "--queue", "q", "--priority", "5", "--max-retries", "0"],
    ["enqueue", "-f", "jobs.jsonl", "--env", "A=1", "--env", "B=2", "--cwd", "/tmp"],
    ["enqueue", "--delay", "5m", "{}", "--timeout", "30s", "--unique-key", "k", "--json"],
    ["enqueue", "--run-at", "2030-01-01T00:00:00Z", "--queue", "", "[]"],
    ["enqueue", "--priority", "1_000", "x"],
    ["enqueue", ""],
    ["enqueue"],
    ["enqueue", "enqueue"],
]

NOT_PLAIN = [
    [], ["status"], ["--json", "enqueue", "{}"], ["enqueue", "--help"], ["enqueue", "-h"],
    ["enqueue", "a", "b"], ["enqueue", "--fil", "x"], ["enqueue", "--file=x"],
    ["enqueue", "--priority", "-5"], ["enqueue", "--priority", "high"], ["enqueue", "--queue"],
    ["enqueue", "--", "{}"], ["enqueue", "-fjobs"], ["--db"], ["--version"], ["enqueue", "-5"],
    ["--queue", "q", "enqueue"],
]


@pytest.mark.parametrize("argv", PLAIN)
def test_a_plain_enqueue_reads_as_argparse_reads_it(argv):
    fast = cli._plain_enqueue(argv)
    assert fast is not None
    assert vars(fast) == vars(cli.build_parser("enqueue").parse_args(argv))


@pytest.mark.parametrize("argv", NOT_PLAIN)
def test_anything_else_is_left_to_argparse(argv):
    assert cli._plain_enqueue(argv) is None
