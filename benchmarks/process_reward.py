"""Process reward (seed 004) on held-out data: fused progress vs time, and confidence in vs out of distribution.

For each task: record expert episodes (noise 0 / 0.1 / 0.3) to fit on, a second set of expert
episodes with other seeds and random-action episodes to test on; fit ``train-reward process``
(state, success labels); then, scoring each held-out episode exactly as online
(``ProcessPotential.score_episode``):

* median Spearman(Phi*, time) over successful held-out expert episodes, up to the first success
  (bar 0.9), with the offline goal (the episode's last frame) and, for the point envs, with the
  online goal (``envs.<env>:goal_state``);
* per-episode mean confidence of held-out expert episodes vs random-action episodes: ROC AUC
  (bar 0.8). The confidence never saw random-action data in training (its negatives are
  synthetic perturbations of the training episodes, see ``trainers.process``).

Command (results in ``benchmarks/results/process_reward/``)::

    python benchmarks/process_reward.py --quiet
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
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from benchmarks.progress_quality import collect  # noqa: E402
from collectors import TrajectoryRecorder, load_trajectories  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from collectors.rollout import record_episodes  # noqa: E402
from reward_wrappers import FusionOverride, Goal, ProcessPotential  # noqa: E402
from trainers import fit_process  # noqa: E402
from trainers.metrics import roc_auc, spearman  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "process_reward"
#: task -> (env id, online goal function or None, training episodes)
TASKS: dict[str, tuple[str, str | None, int]] = {
    "reach": ("PointReach-v0", "envs.point_reach:goal_state", 200),
    "keydoor": ("PointKeyDoor-v0", "envs.point_key_door:goal_state", 200),
    "pickcube": ("PickCube-v1", None, 150),
}
EXPERT_NOISE = (0.0, 0.1, 0.3)


def collect_random(env_id: str, out: pathlib.Path, episodes: int, seed: int) -> None:
    """Uniformly random actions (seeded), recorded like the expert episodes."""
    if out.exists() and any(out.glob("*/*/meta.json")):
        return
    env = TrajectoryRecorder(envs.make(env_id, obs="state", seed=seed), out, metadata={"benchmark": "process_reward"})
    rng = np.random.default_rng(seed)
    space = env.action_space

    def policy(_: Any) -> np.ndarray:
        return rng.uniform(space.low, space.high).astype(space.dtype)

    record_episodes(env, lambda e: policy, range(episodes), seed=seed * 100_000)
    env.close()


def goal_function(reference: str | None) -> Goal | None:
    if reference is None:
        return None
    return Goal.parse(f"fn:{reference}")


def score(potential: ProcessPotential, trajectories: list[Any], goal: Goal | None) -> list[dict[str, float]]:
    rows = []
    for traj in trajectories:
        out = potential.score_episode({"state": np.asarray(traj.obs["state"])}, gamma=1.0, goal=goal)
        hits = np.flatnonzero(np.asarray(traj.labels) > 0.5)
        end = int(hits[0]) if len(hits) else None
        rho = spearman(out.phi_star[: end + 1], np.arange(end + 1, dtype=np.float64)) if end is not None and end >= 2 else None
        rows.append({"success": end is not None, "spearman": rho, "confidence": float(out.confidence.mean())})
    return rows


def run_task(name: str, work: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    env_id, goal_ref, episodes = TASKS[name]
    episodes = args.episodes or episodes
    start = time.perf_counter()
    train = work / name / "train"
    collected = collect(env_id, train, episodes, obs="state", seed=args.seed, noise_levels=EXPERT_NOISE)
    collect(env_id, work / name / "test_expert", args.test_episodes, obs="state", seed=args.seed + 1, noise_levels=EXPERT_NOISE)
    collect_random(env_id, work / name / "test_random", args.test_episodes, seed=args.seed + 2)
    collect_seconds = time.perf_counter() - start
    model = fit_process(train, work / name / "process.pt", inputs=("state",), labels="success", epochs=args.epochs,
                        seed=args.seed, progress=not args.quiet, logdir=work / "tb" / name)
    fit_seconds = time.perf_counter() - start - collect_seconds
    report = json.loads(model.with_name(model.stem + ".report.json").read_text())
    potential = ProcessPotential(model, override=FusionOverride(gating="none"))
    expert = load_trajectories(work / name / "test_expert")
    random = load_trajectories(work / name / "test_random")
    goals = {"last_frame_offline": None, **({"online_goal_fn": goal_function(goal_ref)} if goal_ref else {})}
    figures: dict[str, Any] = {}
    for label, goal in goals.items():
        inside, outside = score(potential, expert, goal), score(potential, random, goal)
        rhos = [r["spearman"] for r in inside if r["spearman"] is not None]
        conf_in, conf_out = [r["confidence"] for r in inside], [r["confidence"] for r in outside]
        figures[label] = {
            "median_spearman_successful": float(np.median(rhos)), "successful_episodes": len(rhos),
            "confidence_expert_mean": float(np.mean(conf_in)), "confidence_random_mean": float(np.mean(conf_out)),
            "confidence_auc_expert_vs_random": roc_auc(np.r_[conf_in, conf_out], np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))]),
            "expert_episodes": len(conf_in), "random_episodes": len(conf_out),
        }
    headline = figures.get("online_goal_fn", figures["last_frame_offline"])
    passed = all(f["median_spearman_successful"] >= 0.9 and f["confidence_auc_expert_vs_random"] >= 0.8 for f in figures.values())
    return {"env": env_id, "goal_function": goal_ref, "collect": collected, "collect_seconds": collect_seconds,
            "fit_seconds": fit_seconds, "fit_report": {k: report[k] for k in ("counts", "val_median_spearman",
                                                                             "val_confidence_auc_synthetic_ood")},
            "figures": figures, "headline": headline, "passed": passed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--work", default="/tmp/rewardswap_process_reward", help="data and models")
    parser.add_argument("--episodes", type=int, default=None, help="training episodes (default per task)")
    parser.add_argument("--test-episodes", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "results.json"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # ManiSkill renders nothing here, but shares the cores with its simulator
    work = pathlib.Path(args.work)
    results = {name: run_task(name, work, args) for name in args.tasks}
    for name, r in results.items():
        for label, f in r["figures"].items():
            print(f"{name:9s} {label:19s} Spearman {f['median_spearman_successful']:.3f} over {f['successful_episodes']}  "
                  f"confidence expert {f['confidence_expert_mean']:.3f} random {f['confidence_random_mean']:.3f} "
                  f"AUC {f['confidence_auc_expert_vs_random']:.3f}")
    from agents.train import package_versions

    write_json_atomic(pathlib.Path(args.out), {
        "benchmark": "process_reward", "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "platform": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
                     **package_versions()},
        "bars": {"median_spearman_successful": 0.9, "confidence_auc_expert_vs_random": 0.8},
        "tasks": results, "all_passed": all(r["passed"] for r in results.values())})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
