"""Held-out quality of progress, stage and preference reward models (issue 6 quality bars).

For each task: record episodes with the scripted expert at several noise levels (some succeed,
some fail) through ``collectors.TrajectoryRecorder``, fit with ``trainers.fit_*`` (split by
trajectory), and evaluate on the held-out trajectories with :mod:`trainers.evaluate`:

* ``reach``: PointReach-v0 progress: median Spearman(progress, time) over held-out successful
  episodes (bar 0.9) and the AUC of final progress, successful vs failed (bar 0.9);
* ``keydoor``: PointKeyDoor-v0 stage mode (``stages="info:has_key"``): stage accuracy on
  held-out frames (bar 0.9);
* ``preference``: PointReach-v0 Bradley-Terry with synthetic labels from the env return:
  held-out pair accuracy (bar 0.85);
* ``pickcube``: ManiSkill PickCube-v1 progress (state obs): median Spearman (bar 0.8).

Prints the figures and writes ``benchmarks/results/progress_quality.json`` (figures, bars,
pass/fail, counts, timings, the exact command) and ``progress_quality.png`` (held-out progress
curves).

    python benchmarks/progress_quality.py                 # all tasks
    python benchmarks/progress_quality.py --tasks reach keydoor preference
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
import time
from typing import Any, Sequence

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from collectors import TrajectoryRecorder, load_trajectories  # noqa: E402
from collectors.rollout import record_episodes  # noqa: E402
from reward_wrappers import load_reward_model  # noqa: E402
from trainers import fit_preference, fit_progress  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from trainers.evaluate import first_success_frame, predict_trajectory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TASKS = ("reach", "keydoor", "preference", "pickcube")
#: Expert noise levels cycled over episodes: mostly successes, and failures from the noisy ones.
NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6, 1.0)


def collect(env_id: str, out: pathlib.Path, episodes: int, *, obs: str, seed: int, info_keys: Sequence[str] = (), noise_levels: Sequence[float] = NOISE_LEVELS) -> dict[str, Any]:
    """Record ``episodes`` episodes (noise cycling over ``noise_levels``) into ``out``."""
    if out.exists() and any(out.glob("*/*/meta.json")):
        trajs = load_trajectories(out)
        return {"episodes": len(trajs), "successful": sum(t.success for t in trajs), "seconds": 0.0, "reused": True}
    start = time.perf_counter()
    env = TrajectoryRecorder(envs.make(env_id, obs=obs, seed=seed), out, info_keys=tuple(info_keys), metadata={"benchmark": "progress_quality"})
    policies = [envs.expert_policy(env, noise=n, seed=seed + i) for i, n in enumerate(noise_levels)]
    steps = record_episodes(env, lambda e: policies[e % len(policies)], range(episodes), seed=seed * 100_000)
    env.close()
    trajs = load_trajectories(out)
    seconds = time.perf_counter() - start
    return {"episodes": len(trajs), "successful": sum(t.success for t in trajs), "steps": steps, "seconds": seconds, "steps_per_second": steps / seconds}


def _report(path: pathlib.Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.stem + ".report.json").read_text())


def _curves(model_path: pathlib.Path, data: pathlib.Path, n: int = 6) -> list[dict[str, list[float]]]:
    """Predicted progress over time for a few held-out episodes (for the figure)."""
    model = load_reward_model(model_path)
    held_out = set(_report(model_path)["val_trajectory_ids"])
    out: list[dict[str, Any]] = []
    wanted = {True: n - n // 2, False: n // 2}  # both successful and failed episodes
    for traj in load_trajectories(data):
        end = first_success_frame(traj.labels)
        if traj.id in held_out and wanted[end is not None] > 0:
            wanted[end is not None] -= 1
            pred = predict_trajectory(model, traj)
            out.append({"success": end is not None, "progress": pred[: (end + 1) if end is not None else None].round(4).tolist()})
    return out


def run_reach(work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    data = work / "point_reach"
    collected = collect("PointReach-v0", data, args.episodes, obs="state", seed=args.seed)
    start = time.perf_counter()
    model = fit_progress(data, work / "reach_progress.pt", inputs=("state",), window=args.window, rewind=0.8, ensemble=3, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=128, lr=1e-3, hidden=128, seed=args.seed, device="cpu", logdir=work / "tb" / "reach", progress=not args.quiet)
    report = _report(model)
    return {
        "env": "PointReach-v0", "obs": "state", "model": str(model), "collect": collected, "fit_seconds": time.perf_counter() - start,
        "figures": {
            "median_spearman": report["val_median_spearman"], "mean_spearman": report["val_mean_spearman"], "min_spearman": report["val_min_spearman"],
            "final_progress_auc": report["val_final_progress_auc"],
            "mean_final_progress_success": report["val_mean_final_progress_success"], "mean_final_progress_failed": report["val_mean_final_progress_failed"],
            "mean_confidence_successful": report["val_mean_confidence_successful"], "mean_confidence_failed": report["val_mean_confidence_failed"],
        },
        "bars": {"median_spearman": 0.9, "final_progress_auc": 0.9},
        "counts": {**report["counts"], "val_episodes_success": report["val_episodes_success"], "val_episodes_failed": report["val_episodes_failed"]},
        "curves": _curves(model, data),
    }


def run_keydoor(work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    # rgb by default: the state vector carries has_key itself, which would make stages trivial;
    # in the image the key disappears and the door changes colour once the key is held.
    obs = args.keydoor_obs
    data = work / f"point_key_door_{obs}"
    collected = collect("PointKeyDoor-v0", data, args.episodes, obs=obs, seed=args.seed, info_keys=("has_key",))
    start = time.perf_counter()
    window, batch_size = (args.window, 128) if obs == "state" else (2, 64)
    model = fit_progress(data, work / f"keydoor_stage_{obs}.pt", inputs=(obs,), window=window, rewind=0.8, stages="info:has_key", epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=batch_size, lr=1e-3, hidden=128, seed=args.seed, device="cpu", logdir=work / "tb" / f"keydoor_{obs}", progress=not args.quiet)
    report = _report(model)
    return {
        "env": "PointKeyDoor-v0", "obs": obs, "window": window, "stages": "info:has_key", "model": str(model), "collect": collected, "fit_seconds": time.perf_counter() - start,
        "figures": {
            "stage_accuracy": report["val_stage_accuracy"], "stage_accuracy_successful_episodes": report.get("val_stage_accuracy_successful"),
            "stage_frames": report["val_stage_frames"], "stage_priors": report["stage_priors"],
            "median_spearman": report["val_median_spearman"], "final_progress_auc": report["val_final_progress_auc"],
        },
        "bars": {"stage_accuracy": 0.9},
        "counts": report["counts"],
    }


def run_preference(work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    data = work / "point_reach"
    collected = collect("PointReach-v0", data, args.episodes, obs="state", seed=args.seed)
    start = time.perf_counter()
    model = fit_preference(data, work / "reach_preference.pt", inputs=("state",), segment_length=args.segment_length, num_pairs=4000, num_val_pairs=1000, epochs=args.epochs, batch_size=64, lr=1e-3, hidden=128, seed=args.seed, device="cpu", logdir=work / "tb" / "preference", progress=not args.quiet)
    report = _report(model)
    return {
        "env": "PointReach-v0", "obs": "state", "labels": report["labels"], "segment_length": args.segment_length, "model": str(model), "collect": collected,
        "fit_seconds": time.perf_counter() - start,
        "figures": {"pair_accuracy": report["val_pair_accuracy"], "pair_auc": report["val_pair_auc"], "return_spearman": report["val_return_spearman"]},
        "bars": {"pair_accuracy": 0.85},
        "counts": report["counts"],
    }


def run_pickcube(work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    data = work / "pick_cube"
    collected = collect("PickCube-v1", data, args.pickcube_episodes, obs="state", seed=args.seed, info_keys=("is_grasped",), noise_levels=(0.0, 0.05, 0.1, 0.2, 0.5))
    start = time.perf_counter()
    model = fit_progress(data, work / "pickcube_progress.pt", inputs=("state",), window=args.window, rewind=0.8, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=128, lr=1e-3, hidden=128, seed=args.seed, device="cpu", logdir=work / "tb" / "pickcube", progress=not args.quiet)
    report = _report(model)
    return {
        "env": "PickCube-v1", "obs": "state", "model": str(model), "collect": collected, "fit_seconds": time.perf_counter() - start,
        "figures": {
            "median_spearman": report["val_median_spearman"], "mean_spearman": report["val_mean_spearman"], "min_spearman": report["val_min_spearman"],
            "final_progress_auc": report["val_final_progress_auc"],
        },
        "bars": {"median_spearman": 0.8},
        "counts": {**report["counts"], "val_episodes_success": report["val_episodes_success"], "val_episodes_failed": report["val_episodes_failed"]},
        "curves": _curves(model, data),
    }


RUNNERS = {"reach": run_reach, "keydoor": run_keydoor, "preference": run_preference, "pickcube": run_pickcube}


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("reach", "pickcube") if t in results and results[t].get("curves")]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for curve in results[task]["curves"]:
            ax.plot(curve["progress"], color="tab:green" if curve["success"] else "tab:red", alpha=0.8)
        ax.set_title(f"{results[task]['env']}: held-out progress\n(green: successful, red: failed episodes)")
        ax.set_xlabel("frame")
        ax.set_ylabel("predicted progress")
        ax.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--work", default="/tmp/rewardswap_progress_quality", help="where buffers, checkpoints and TensorBoard logs go (reused if present)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per built-in task")
    parser.add_argument("--pickcube-episodes", type=int, default=150, help="PickCube-v1 episodes")
    parser.add_argument("--keydoor-obs", choices=["state", "rgb"], default="rgb", help="observation of the stage-mode task (the state vector contains has_key)")
    parser.add_argument("--window", type=int, default=4, help="causal window of the progress models")
    parser.add_argument("--segment-length", type=int, default=25, help="preference segment length (steps)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps-per-epoch", type=int, default=50, help="batches per epoch of the progress fits (small buffers: one pass is only a few batches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "progress_quality.json"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # ManiSkill's software renderer and torch share two cores

    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    results: dict[str, Any] = dict(previous.get("tasks", {}))
    for task in args.tasks:
        print(f"== {task}", flush=True)
        result = RUNNERS[task](work, args)
        result["passed"] = all(result["figures"][k] >= bar for k, bar in result["bars"].items())
        result["command"] = "python benchmarks/progress_quality.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
        results[task] = result
        for k, v in result["figures"].items():
            if isinstance(v, float):
                bar = result["bars"].get(k)
                print(f"  {k:40s} {v:.4f}" + (f"   (bar >= {bar}: {'PASS' if v >= bar else 'FAIL'})" if bar is not None else ""))
        print(f"  counts {json.dumps(result['counts'])}\n  collect {json.dumps(result['collect'])}  fit {result['fit_seconds']:.1f}s", flush=True)
    payload = {
        "benchmark": "progress_quality",
        "platform": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count()},
        "tasks": results,
        "all_passed": all(r["passed"] for r in results.values()),
    }
    write_json_atomic(out, payload)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if out.with_suffix('.png').exists() else ""))
    return 0 if payload["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
