"""Image reward models on any camera: held-out quality at 24x40, 64x64 and 128x128.

For each camera size: record PointReach-v0 episodes (scripted expert at mixed noise, so some
fail) with an rgb camera of that size, fit an rgb progress model and an rgb success classifier
(split by trajectory), and print the held-out figures. At 24x40 the agent is a disk of about
two pixels and the only thing that moves. Bars (issue 17 point 5, at 24x40): progress median
Spearman with time >= 0.9 over held-out successful episodes, final-progress AUC (successful vs
failed) >= 0.9. Writes ``benchmarks/results/image_sizes.json`` with the exact command.

    python benchmarks/image_sizes.py                       # 24x40 64x64 128x128
    python benchmarks/image_sizes.py --sizes 24x40
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
import tempfile
import time
from typing import Any, Sequence

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from agents.train import package_versions  # noqa: E402
from collectors import TrajectoryRecorder  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from collectors.rollout import record_episodes  # noqa: E402
from envs.options import parse_render_size  # noqa: E402
from trainers import fit_classifier, fit_progress  # noqa: E402

NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6, 1.0)
BARS = {"24x40": {"progress_median_spearman": 0.9, "progress_final_auc": 0.9}}


def run_size(size_text: str, work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    size = parse_render_size(size_text)
    data = work / f"data_{size_text}"
    start = time.perf_counter()
    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=size, seed=args.seed), data)
    policies = [envs.expert_policy(env, noise=n, seed=args.seed + i) for i, n in enumerate(NOISE_LEVELS)]
    steps = record_episodes(env, lambda e: policies[e % len(policies)], range(args.episodes), seed=args.seed)
    env.close()
    collect_seconds = time.perf_counter() - start
    common = dict(inputs=("rgb",), epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=64, lr=1e-3,
                  hidden=128, seed=args.seed, device="cpu", progress=not args.quiet)
    start = time.perf_counter()
    fit_progress(data, work / f"progress_{size_text}.pt", window=args.window, rewind=0.8, **common)
    progress_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fit_classifier(data, work / f"classifier_{size_text}.pt", **common)
    classifier_seconds = time.perf_counter() - start
    progress = json.loads((work / f"progress_{size_text}.report.json").read_text())
    classifier = json.loads((work / f"classifier_{size_text}.report.json").read_text())
    figures = {
        "progress_median_spearman": progress["val_median_spearman"],
        "progress_final_auc": progress["val_final_progress_auc"],
        "classifier_auc": classifier["val_auc"],
        "classifier_precision": classifier["at_suggested_threshold"]["precision"],
        "classifier_recall": classifier["at_suggested_threshold"]["recall"],
    }
    bars = BARS.get(size_text, {})
    return {
        "render_size": size_text, "episodes": args.episodes, "frames": steps, "figures": figures, "bars": bars,
        "passed": all(figures[k] >= v for k, v in bars.items()) if bars else None,
        "counts": {"progress": progress["counts"], "classifier": classifier["counts"]},
        "seconds": {"collect": collect_seconds, "fit_progress": progress_seconds, "fit_classifier": classifier_seconds},
        "train_frames_per_second": {"progress": progress["train_frames_per_second"], "classifier": classifier["train_frames_per_second"]},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["24x40", "64x64", "128x128"], help="camera sizes, HEIGHTxWIDTH")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--window", type=int, default=2, help="causal window of the progress model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="where buffers and checkpoints go (default: a temporary directory)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "image_sizes.json"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the collection renders on the CPU; one thread keeps runs comparable
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="image_sizes_"))
    results = {}
    for size in args.sizes:
        results[size] = run_size(size, work, args)
        f = results[size]["figures"]
        print(f"{size:>8}: progress Spearman {f['progress_median_spearman']:.3f}  final AUC {f['progress_final_auc']:.3f}  "
              f"classifier AUC {f['classifier_auc']:.3f}  (fits {results[size]['seconds']['fit_progress']:.0f} s + "
              f"{results[size]['seconds']['fit_classifier']:.0f} s)" + ("" if results[size]["passed"] is None else
                                                                         f"  bars {'met' if results[size]['passed'] else 'NOT met'}"))
    write_json_atomic(args.out, {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "results": results, "versions": package_versions(), "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                                                                       "cpus": os.cpu_count(), "torch_threads": 1},
    })
    print(f"wrote {args.out}")
    return 0 if all(r["passed"] is not False for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
