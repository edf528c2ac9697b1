"""Compare env reward against learned rewards on one budget (same as ``rewardswap bench``).

    python benchmarks/compare_rewards.py --env PushCube-v1 --conditions sparse env classifier:c.pt \
        --seeds 3 --steps 200000 --out benchmarks/results/pushcube

Run with ``--help`` for every option.
"""

from __future__ import annotations

import argparse
import sys

from agents import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=bench.__doc__.strip().split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
