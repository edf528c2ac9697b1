"""Record trajectories into positive/negative buffers.

Not implemented yet: this command will record trajectories (collectors issue).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: this command is not implemented yet; it will record trajectories (collectors issue).", file=sys.stderr)
    return 2
