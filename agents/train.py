"""Train an SB3 agent with the env reward or a learned reward.

Not implemented yet: this command will train SB3 PPO/SAC on a swapped reward (agents issue).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("rewardswap: this command is not implemented yet; it will train SB3 PPO/SAC on a swapped reward (agents issue).", file=sys.stderr)
    return 2
