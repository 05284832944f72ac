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
