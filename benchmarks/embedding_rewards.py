"""Rewards on frozen embeddings (issue 20 bars), on PointReach-v0 rgb.

1. Record PointReach-v0 episodes (scripted expert at mixed noise) with a 64x64 rgb camera and fit
   an rgb success classifier: its CNN is the frozen backbone (``rewardswap:classifier.pt``).
2. ``rewardswap embed`` the buffers with it (``rgb_emb``, float16) and print frames/s, also for a
   ResNet-10 backbone (this project's HIL-SERL-style encoder, random weights, as TorchScript).
3. Fit a progress model on ``rgb_emb`` with the causal transformer trunk (window of frames spread
   uniformly over the episode so far), optionally with a task-text token; held-out bars: median
   Spearman(progress, time) >= 0.9 over successful episodes, final-progress AUC >= 0.9.
4. Online (``EmbedObservation`` + ``ProgressReward``, embeddings computed per step) against
   offline (``rewardswap embed`` on the same episodes' recorded frames, then the model): the
   rewards must agree to 1e-5.

Writes ``benchmarks/results/embedding_rewards/results.json`` with the exact command.

    python benchmarks/embedding_rewards.py
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

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from agents.train import package_versions  # noqa: E402
from collectors import TrajectoryRecorder, load_trajectories  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from collectors.rollout import record_episodes  # noqa: E402
from reward_wrappers import ProgressReward, load_reward_model  # noqa: E402
from reward_wrappers.models.backbones import Backbone, load_backbone  # noqa: E402
from reward_wrappers.embedding import EmbedObservation  # noqa: E402
from reward_wrappers.models.encoders import ResNet10  # noqa: E402
from trainers import fit_classifier, fit_progress  # noqa: E402
from trainers.embed import embed_buffers  # noqa: E402
from trainers.evaluate import predict_trajectory  # noqa: E402
from reward_wrappers.models.frames import FrameSampling  # noqa: E402

NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6, 1.0)


def record(out: pathlib.Path, episodes: int, seed: int, env: Any = None) -> int:
    made = env or envs.make("PointReach-v0", obs="state+rgb", render_size=64, seed=seed)
    recorder = TrajectoryRecorder(made, out)
    policies = [envs.expert_policy(recorder, noise=n, seed=seed + i) for i, n in enumerate(NOISE_LEVELS)]
    steps = record_episodes(recorder, lambda e: policies[e % len(policies)], range(episodes), seed=seed)
    recorder.close()
    return steps


def online_offline(model_path: pathlib.Path, backbone: Backbone, work: pathlib.Path, episodes: int, seed: int) -> dict[str, Any]:
    """Rewards paid online by EmbedObservation + ProgressReward against the model on embedded recordings."""
    model = load_reward_model(model_path)
    data = work / "online"
    inner = envs.make("PointReach-v0", obs="state+rgb", render_size=64, seed=seed)
    recorder = TrajectoryRecorder(inner, data)
    env = ProgressReward(EmbedObservation(recorder, backbone, model=model), model)  # reward = progress at s'
    online: list[np.ndarray] = []
    policy_env = env
    for episode in range(episodes):
        policy = envs.expert_policy(policy_env, noise=NOISE_LEVELS[episode % len(NOISE_LEVELS)], seed=seed + episode)
        obs, _ = env.reset(seed=seed + episode)
        rewards, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            rewards.append(info["learned_reward"])
            done = terminated or truncated
        online.append(np.array(rewards))
    env.close()
    embed_buffers(data, backbone, progress=False)
    trajectories = sorted(load_trajectories(data), key=lambda t: t.meta.get("episode_index", 0))
    offline = [predict_trajectory(model, t)[1:] for t in trajectories]
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(online, offline)]
    return {"episodes": episodes, "steps": int(sum(len(r) for r in online)), "max_abs_difference": max(diffs),
            "lengths_match": all(len(a) == len(b) for a, b in zip(online, offline))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--sampling", default="uniform", choices=["last", "strided", "uniform"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="buffers and checkpoints (default: a temporary directory; reused when given)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embedding_rewards" / "results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # renders on the CPU; one thread keeps the throughput figures comparable
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="embedding_rewards_"))
    data = work / "data"
    timing: dict[str, float] = {}
    start = time.perf_counter()
    if not (data / "positive").exists():
        record(data, args.episodes, args.seed)
    timing["collect"] = time.perf_counter() - start
    clf = work / "classifier.pt"
    if not clf.exists():
        fit_classifier(data, clf, inputs=("rgb",), epochs=8, steps_per_epoch=50, batch_size=64, lr=1e-3, seed=args.seed,
                       device="cpu", progress=False)
    backbone = load_backbone(f"rewardswap:{clf}")
    embedded = embed_buffers(data, backbone, progress=False)
    throughput = {"classifier_cnn": embedded}
    resnet = ResNet10(3, (64, 64), out_dim=256).eval()
    scripted = work / "resnet10.ts"
    torch.jit.save(torch.jit.trace(resnet, torch.zeros(1, 3, 64, 64)), str(scripted))
    throughput["resnet10_torchscript"] = embed_buffers(data, load_backbone(f"torchscript:{scripted}"), out_key="rgb_resnet10",
                                                       progress=False)
    results: dict[str, Any] = {}
    for name, text in (("no_text", None), ("with_text", list(np.random.default_rng(args.seed).normal(size=32)))):
        start = time.perf_counter()
        path = fit_progress(data, work / f"progress_{name}.pt", inputs=("rgb_emb",),
                            window=FrameSampling(args.window, args.sampling), trunk="transformer", text=text,
                            transformer={"d_model": 64, "layers": 2, "heads": 4}, epochs=args.epochs,
                            steps_per_epoch=args.steps_per_epoch, batch_size=64, lr=1e-3, hidden=128, seed=args.seed,
                            device="cpu", progress=False)
        report = json.loads(path.with_name(path.stem + ".report.json").read_text())
        results[name] = {"median_spearman": report["val_median_spearman"], "final_progress_auc": report["val_final_progress_auc"],
                         "fit_seconds": time.perf_counter() - start, "counts": report["counts"]}
        print(f"{name}: held-out median Spearman {report['val_median_spearman']:.3f}, final-progress AUC "
              f"{report['val_final_progress_auc']:.3f}")
    agreement = online_offline(work / "progress_no_text.pt", backbone, work, episodes=6, seed=args.seed + 1000)
    print(f"online vs offline: max |difference| {agreement['max_abs_difference']:.2e} over {agreement['steps']} steps")
    for name, stats in throughput.items():
        print(f"embed {name}: {stats['frames_per_second']:.0f} frames/s")
    bars = {"median_spearman": 0.9, "final_progress_auc": 0.9, "online_offline_max_abs_difference": 1e-5}
    passed = (results["no_text"]["median_spearman"] >= 0.9 and results["no_text"]["final_progress_auc"] >= 0.9
              and agreement["max_abs_difference"] <= 1e-5 and agreement["lengths_match"])
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "backbone": backbone.identity, "progress": results, "online_offline": agreement, "embed_throughput": throughput,
        "bars": bars, "passed": passed, "timing": timing, "versions": package_versions(),
        "hardware": {"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "not_measured": "torchvision ResNet-18: the PyPI torchvision wheel does not load against this machine's CPU-only "
                        "torch (operator torchvision::nms does not exist); ResNet-10 through TorchScript stands in",
    })
    print(f"wrote {out}; bars {'met' if passed else 'NOT met'}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
