"""One table from several ``rewardswap bench`` outputs: final true success, monitor precision and
labels per seed, for each condition of each ``results.json`` (issue: few labels, budget sweep).

    python benchmarks/few_labels_table.py "budget 100=benchmarks/results/pushcube_few_labels" \\
        "budget 0=/tmp/fewlab_b0" "dense=benchmarks/results/pushcube_pixels#dense_env" > table.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics


def rows(label: str, out_dir: pathlib.Path, only: str = "") -> list[str]:
    results = json.loads((out_dir / "results.json").read_text())
    lines = []
    for condition in results["conditions"]:
        if only and condition["condition"] != only:
            continue
        success = condition["final_true_success_per_seed"]
        precision = condition.get("monitor_precision_last20_per_seed") or [None] * len(success)
        labels = condition.get("labels_per_seed") or [None] * len(success)
        seeds = results["seeds"]
        per_seed = " / ".join(f"{s:.2f}" for s in success)
        prec = " / ".join("-" if p is None else f"{p:.2f}" for p in precision)
        used = " / ".join("-" if lab is None else f"{lab['total']} ({lab['trajectory_marks']}+{lab['queries']})"
                          for lab in labels)
        lines.append(f"| {label} | {condition['condition']} | {', '.join(map(str, seeds))} | {per_seed} | "
                     f"{statistics.mean(success):.2f} | {prec} | {used} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR[#CONDITION]",
                        help="a row label and a bench --out directory (and one of its conditions; default all)")
    args = parser.parse_args()
    print("| run | condition | seeds | final true success (per seed) | mean | monitor precision, last 20 % | "
          "labels: total (marks + queries) |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        label, _, where = run.partition("=")
        path, _, only = where.partition("#")
        if not path:
            parser.error(f"{run!r}: expected LABEL=DIR[#CONDITION]")
        print("\n".join(rows(label, pathlib.Path(path), only)))


if __name__ == "__main__":
    main()
