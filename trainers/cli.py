"""Fit a reward model from trajectory buffers.

Not implemented yet: this command will fit reward models from buffers (trainers issues).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: this command is not implemented yet; it will fit reward models from buffers (trainers issues).", file=sys.stderr)
    return 2
