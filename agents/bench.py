"""Compare the env reward with learned rewards on the same budget.

Not implemented yet: this command will compare reward conditions over seeds (agents issue).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: this command is not implemented yet; it will compare reward conditions over seeds (agents issue).", file=sys.stderr)
    return 2
