"""Fit a reward model from trajectory buffers: ``rewardswap train-reward KIND ...``.

Kinds: ``classifier`` (frame success classifier), ``progress`` (ReWiND / SARM-style progress),
``preference`` (Bradley-Terry), and any registered kind (:mod:`trainers.kinds`). Each kind's
options live in its own module.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from trainers.kinds import reward_kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, kind in reward_kinds().items():  # built-in and registered kinds (trainers.kinds)
        sp = sub.add_parser(name, help=kind.description, description=kind.description,
                            formatter_class=parser.formatter_class)  # the rewardswap command's
        kind.add_arguments(sp)
        sp.set_defaults(_kind_run=kind.run)


def run(args: argparse.Namespace) -> int:
    problem = unwritable(args.out) if getattr(args, "out", None) else None
    if problem:  # found now, not after the training it would throw away
        print(f"rewardswap train-reward {args.kind}: error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args._kind_run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad data or options: one line saying what to do
        print(f"rewardswap train-reward {args.kind}: error: {exc}", file=sys.stderr)
        return 2


def unwritable(out: str) -> str | None:
    """Why a checkpoint cannot be written to ``out`` (None when it can): checked before training."""
    path = pathlib.Path(out)
    if path.is_dir():
        return "is a directory; give a file name such as model.pt"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the directory the missing ones will be created in
    if not parent.is_dir():
        return f"{parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None
