"""Every command's --help names each option's default once, and never a default of None."""

from __future__ import annotations

import re

import pytest

from agents.cli import SUBCOMMANDS, build_parser


def _helps(command: str) -> list[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    helps = [sub.format_help()]
    for action in sub._actions:  # train-reward's kinds are subcommands of their own
        if getattr(action, "choices", None) and isinstance(action.choices, dict):
            helps += [kind.format_help() for kind in action.choices.values()]
    return helps


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_each_default_appears_once(command):
    for text in _helps(command):
        flat = " ".join(text.split())
        for option in re.split(r"\s(?=-{1,2}[a-z])", flat):
            assert option.count("(default:") <= 1, option
        assert "(default: None)" not in flat and "(default: False)" not in flat
