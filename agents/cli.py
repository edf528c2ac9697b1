"""The ``rewardswap`` command line: one subcommand per stage of the pipeline.

Each subcommand's arguments and behaviour live in the package that owns that stage; this file
only routes. Only the chosen subcommand's module is imported, so ``rewardswap --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: subcommand -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("collectors.cli", "record trajectories from a policy into positive/negative .npy buffers"),
    "embed": ("trainers.embed", "store a frozen image backbone's per-frame embeddings as a new field of each trajectory"),
    "train-reward": ("trainers.cli", "fit a reward model (classifier, progress, preference) from buffers"),
    "label": ("agents.labelling.command", "mark recorded trajectories' first success frame (a page, a function or the recorded flags)"),
    "train-agent": ("agents.train_cli", "train an SB3 agent on the env reward or a learned reward"),
    "bench": ("agents.bench", "compare env reward against learned rewards on one budget"),
    "demo": ("agents.demo", "collect, fit reward models, train under 5 rewards, report (default env PointReach-v0)"),
    "inspect": ("agents.inspect_cmd", "write an HTML review page for a reward checkpoint"),
}


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default shown once: not appended where its help already says it, nor where
    there is none to show (None, a flag's False, a required option)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or action.required or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action) or text


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others get their one-line help), so
    ``rewardswap --help`` imports neither torch nor SB3."""
    parser = argparse.ArgumentParser(
        prog="rewardswap",
        description="Swap a Gymnasium env's reward for a learned one without touching the agent code.",
        epilog="Run 'rewardswap COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            formatter_class=DefaultsOnceFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            sp.description = (module.__doc__ or help_text).strip().split("\n\n")[0]
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in SUBCOMMANDS else None).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
