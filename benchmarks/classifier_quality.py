"""Success-classifier quality on held-out trajectories, and training throughput.

Collects trajectories (scripted expert at mixed noise, plus random actions), fits
``trainers.fit_classifier`` and prints the held-out AUC, precision and recall and the training
frames/s; writes ``benchmarks/results/classifier_<env>_<inputs>.json`` with the exact command.

    python benchmarks/classifier_quality.py --env PointReach-v0 --inputs rgb --episodes 200
    python benchmarks/classifier_quality.py --env PickCube-v1 --inputs rgb --episodes 120
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import shutil
import sys
import tempfile
import time

import torch

from agents.demo import collect_mixed
from agents.train import package_versions
from trainers import fit_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--env", default="PointReach-v0")
    parser.add_argument("--inputs", nargs="+", default=["rgb"])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--encoder", default="cnn", choices=["cnn", "resnet10"])
    parser.add_argument("--window", type=int, default=1, help="frames the classifier reads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera-view", default=None,
                        help="ManiSkill camera placement for rgb (envs.maniskill.CAMERA_VIEWS, e.g. 'workspace'); default: the task's")
    parser.add_argument("--data", default=None, help="reuse (or keep) the collected buffers here")
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)

    work = pathlib.Path(tempfile.mkdtemp(prefix="clfbench_"))
    data = pathlib.Path(args.data) if args.data else work / "data"
    start = time.perf_counter()
    if not (data / "positive").exists():
        # Collection steps the simulator and renders on the CPU: keep torch off the second core.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        make_kwargs = {"camera_view": args.camera_view} if args.camera_view else None
        counts = collect_mixed(args.env, data, args.episodes, seed=args.seed, obs="state+rgb", make_kwargs=make_kwargs)
        torch.set_num_threads(threads)
    else:
        counts = {"reused": str(data)}
    collect_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fit_classifier(data, work / "classifier.pt", inputs=tuple(args.inputs), window=args.window, epochs=args.epochs,
                   encoder=args.encoder, seed=args.seed)
    fit_seconds = time.perf_counter() - start
    report = json.loads((work / "classifier.report.json").read_text())
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "env": args.env,
        "inputs": args.inputs,
        "encoder": args.encoder,
        "window": args.window,
        "camera_view": args.camera_view,
        "episodes": args.episodes,
        "collected": counts,
        "val_auc": report["val_auc"],
        "at_suggested_threshold": report["at_suggested_threshold"],
        "at_threshold_0.5": report["at_threshold_0.5"],
        "counts": report["counts"],
        "train_frames_per_second": report["train_frames_per_second"],
        "torch_threads": torch.get_num_threads(),
        "collect_seconds": collect_seconds,
        "fit_seconds": fit_seconds,
        "versions": package_versions(),
        "hardware": {"machine": platform.machine(), "cpus": os.cpu_count()},
    }
    view = (f"_{args.camera_view}" if args.camera_view else "") + (f"_window{args.window}" if args.window > 1 else "")
    out = pathlib.Path(args.results) / f"classifier_{args.env}_{'+'.join(args.inputs)}{view}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = report["at_suggested_threshold"]
    print(f"{args.env} {'+'.join(args.inputs)}: val AUC {report['val_auc']:.4f}, precision {m['precision']:.3f}, "
          f"recall {m['recall']:.3f} at {m['threshold']:.2f}; {report['train_frames_per_second']:.0f} train frames/s "
          f"({torch.get_num_threads()} threads); wrote {out}")
    shutil.rmtree(work / "tb", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
