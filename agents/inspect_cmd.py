"""Write an HTML review page for a reward checkpoint.

Not implemented yet: this command will write an HTML review page of top/bottom trajectories (agents issue).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: this command is not implemented yet; it will write an HTML review page of top/bottom trajectories (agents issue).", file=sys.stderr)
    return 2
