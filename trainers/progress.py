"""Not implemented yet: fitting a progress reward model (trainers issue 6)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: train-reward progress is not implemented yet.", file=sys.stderr)
    return 2
