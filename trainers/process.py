"""Fit a process reward (``train-reward process``): hop predictor, novelty reference, fusion.

Three fits, one checkpoint (``process_net``, :mod:`reward_wrappers.process.net`):

1. the **hop predictor** on frame pairs of the labelled training episodes (half consecutive
   frames, half any two frames of an episode, both orders): squared error of the hop, Gaussian
   likelihood of its spread, on the provider's hop labels (:mod:`trainers.process_labels`);
2. the **novelty reference**: features and one-step changes of those episodes' frames;
3. the **fusion network** on episodes held back from 1 and 2 (so their novelty is what an unseen
   episode's is): its weights so that the fused progress matches the labels, its confidence so
   that it is high on those held-back episodes and low on synthetic out-of-distribution episodes
   (random walks from the first frame, time-shuffled frames, noise-corrupted features), never on
   recorded failures or random-action data, so that held-out OOD measurements stay honest.

Held-out figures use the potential exactly as it runs online
(:meth:`~reward_wrappers.process.potential.ProcessPotential.score_episode`), offline goal = the
episode's last frame: median Spearman(Phi*, time) over successful episodes and the confidence
AUC against the synthetic OOD episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.networks import TorchRewardModel
from reward_wrappers.process.fusion import FusionOverride
from reward_wrappers.process.net import HOP_FORMS, ProcessNet, check_process_spec, fusion_inputs, raw_features
from reward_wrappers.process.potential import Goal, ProcessPotential
from trainers.common import add_fit_arguments, fit_arguments, report_path, resolve_device, seed_everything
from trainers.data import DataLike, choose_inputs, input_specs, load_buffers, recorded_embeddings, recorded_env, split_by_trajectory
from trainers.kinds import RewardKind, register_reward_kind
from trainers.loop import fit_loop, save_fitted
from trainers.metrics import roc_auc, spearman
from trainers.process_labels import Episode, LabelProvider, hop_labels, label_provider


def _episodes(trajectories: Sequence[Any], spec: ModelSpec, provider: LabelProvider, mean: np.ndarray,
              std: np.ndarray) -> list[tuple[Episode, np.ndarray]]:
    out = []
    for traj in trajectories:
        episode = Episode((raw_features(spec, traj.obs) - mean) / std, np.asarray(traj.labels) > 0.5, traj)
        progress = provider(episode)
        if progress is not None and len(progress) >= 2:
            out.append((episode, progress))
    return out


def _pairs(labelled: Sequence[tuple[Episode, np.ndarray]], n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``n`` (before, after, hop label) rows: half consecutive frames, half any two, both orders.

    Four frames in five come from the stretch where progress still changes (up to its first
    maximum): an episode that runs on after success would otherwise fill most pairs with
    zero-hop frames at the goal, and the early stage's small hops would go unlearnt."""
    which = rng.integers(len(labelled), size=n)
    before, after, labels = [], [], []
    for i in np.unique(which):
        episode, progress = labelled[i]
        k, T = int((which == i).sum()), len(progress)
        moving = int(np.argmax(progress >= progress.max() - 1e-9)) + 1  # frames up to the first maximum

        def frames(size: int) -> np.ndarray:
            return np.where(rng.random(size) < 0.8, rng.integers(moving, size=size), rng.integers(T, size=size))

        b = frames(k)
        a = np.where(rng.random(k) < 0.5, np.clip(b + rng.choice([-1, 1], size=k), 0, T - 1), frames(k))
        before.append(episode.features[b]), after.append(episode.features[a]), labels.append(hop_labels(progress, b, a))
    return np.concatenate(before), np.concatenate(after), np.concatenate(labels)


@torch.no_grad()
def _perspective_rows(net: ProcessNet, x: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Fusion inputs ``(T, 10)`` of one episode ``x`` (normalised) toward ``goal``, as online (no smoothing)."""
    t = torch.as_tensor(x, dtype=torch.float32)
    g = torch.as_tensor(goal, dtype=torch.float32).expand_as(t)
    mu_step, sigma_step = net.hop(t[:-1], t[1:])
    mu_f, sigma_f = net.hop(t[:1].expand_as(t), t)
    mu_b, sigma_b = net.hop(t, g)
    zero = torch.zeros(1)
    steps = torch.arange(len(t)).clamp_min(1)
    phis = torch.stack([torch.cat([zero, mu_step.cumsum(0)]), mu_f, 1 - mu_b], 1).clamp(0, 1).double().numpy()
    sigmas = torch.stack([torch.cat([zero, sigma_step.cumsum(0)]) / steps, sigma_f, sigma_b], 1).double().numpy()
    change = torch.cat([torch.zeros_like(t[:1]), t[1:] - t[:-1]])
    return fusion_inputs(phis, sigmas, net.novelty(t, change).double().numpy())


def _synthetic_ood(x: np.ndarray, step_std: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Out-of-distribution versions of one episode: a random walk from its first frame, its frames
    in random order, its features with unit noise."""
    walk = x[0] + np.cumsum(np.vstack([np.zeros((1, x.shape[1])), rng.normal(0, 1, (len(x) - 1, x.shape[1])) * step_std]), 0)
    return [walk, x[rng.permutation(len(x))], x + rng.normal(0, 1, x.shape)]


def _feature_keys(trajectories: Sequence[Any]) -> tuple[str, ...]:
    """The default inputs: the data's ``state`` key, else its vector keys (embeddings included), never images."""
    obs = trajectories[0].obs
    vectors = tuple(k for k in obs if np.asarray(obs[k]).ndim == 2)
    chosen = ("state",) if "state" in obs else vectors
    if not chosen:
        raise ValueError(f"no state or embedding key among {sorted(obs)}: embed the images (`rewardswap embed`) or pass inputs")
    print(f"inputs not given: the process reward reads {list(chosen)} (keys in the data: {sorted(obs)})", file=sys.stderr)
    return chosen


def fit_process(
    data: DataLike,
    out: str | os.PathLike,
    *,
    inputs: Sequence[str] | None = None,
    labels: str | LabelProvider = "success",
    hidden: int = 128,
    fusion_hidden: int = 32,
    hop_form: str = "anchored",
    fusion_fraction: float = 0.25,
    reference_rows: int = 2048,
    epochs: int = 30,
    batch_size: int = 256,
    steps_per_epoch: int | None = None,
    lr: float = 1e-3,
    patience: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    logdir: str | os.PathLike | None = None,
    progress: bool = True,
) -> os.PathLike:
    """Fit a process reward on buffers (see the module docstring); returns the checkpoint path."""
    rng = seed_everything(seed)
    dev = resolve_device(device)
    trajectories = load_buffers(data)
    keys = choose_inputs(trajectories, inputs if inputs is not None else _feature_keys(trajectories))
    spec = ModelSpec(input_specs(trajectories, keys), output="progress", has_confidence=True)
    check_process_spec(spec)
    provider = label_provider(labels)
    train, val = split_by_trajectory(trajectories, val_fraction, seed)
    frames = np.concatenate([raw_features(spec, t.obs) for t in train])
    mean, std = frames.mean(0), frames.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    labelled = _episodes(train, spec, provider, mean, std)
    held = _episodes(val, spec, provider, mean, std)
    if len(labelled) < 4 or not held:
        raise ValueError(f"the {provider.__class__.__name__} labels cover {len(labelled)} training and {len(held)} held-out "
                         "episodes; record more (successful) episodes, or use another --labels provider")
    order = rng.permutation(len(labelled))
    n_fusion = max(1, int(round(fusion_fraction * len(labelled))))
    fusion_part, hop_part = [labelled[i] for i in order[:n_fusion]], [labelled[i] for i in order[n_fusion:]]

    hop_frames = np.concatenate([e.features for e, _ in hop_part])
    changes = np.concatenate([np.vstack([np.zeros((1, e.features.shape[1])), np.diff(e.features, axis=0)]) for e, _ in hop_part])
    rows = rng.choice(len(hop_frames), size=min(reference_rows, len(hop_frames)), replace=False)
    net = ProcessNet(spec, hidden=hidden, fusion_hidden=fusion_hidden, reference_rows=len(rows), hop_form=hop_form).to(dev)
    net.mean.copy_(torch.as_tensor(mean)), net.std.copy_(torch.as_tensor(std))
    net.reference.copy_(torch.as_tensor(np.hstack([hop_frames, changes])[rows]))

    def tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.as_tensor(a, dtype=torch.float32, device=dev) for a in arrays]

    nll = torch.nn.GaussianNLLLoss()

    def hop_loss(mu: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The mean by squared error, the spread by likelihood around the detached mean: likelihood
        # alone lets the net call large hops uncertain instead of fitting them (Phi_F, Phi_B need them).
        return F.mse_loss(mu, y) + nll(mu.detach(), y, sigma**2)

    val_pairs = tensors(*_pairs(held, 4096, np.random.default_rng(seed + 1)))

    def hop_batch() -> tuple[torch.Tensor, int]:
        before, after, y = tensors(*_pairs(hop_part, batch_size, rng))
        mu, sigma = net.hop(before, after)
        return hop_loss(mu, sigma, y), batch_size

    def hop_validate() -> dict[str, float]:
        with torch.no_grad():
            mu, sigma = net.hop(val_pairs[0], val_pairs[1])
            return {"val_loss": float(hop_loss(mu, sigma, val_pairs[2])), "val_hop_mae": float((mu - val_pairs[2]).abs().mean())}

    steps = steps_per_epoch or max(100, len(hop_frames) // batch_size)
    hop_fit = fit_loop(net.hop_modules(), hop_batch, hop_validate, epochs=epochs, steps=steps, lr=lr, patience=patience, desc="hop predictor",
                       unit="pairs", logdir=None if logdir is None else os.path.join(logdir, "hop"), progress=progress,
                       postfix=("val_loss", "val_hop_mae"))

    # The novelty scale: a typical frame of an unseen training-like episode (the fusion part) reads 1.
    net = net.cpu()
    with torch.no_grad():
        raw = torch.cat([net.novelty(torch.as_tensor(e.features, dtype=torch.float32),
                                     torch.as_tensor(np.vstack([np.zeros((1, e.features.shape[1])), np.diff(e.features, axis=0)]),
                                                     dtype=torch.float32)) for e, _ in fusion_part])
    net.novelty_scale.fill_(max(float(raw.median()), 1e-8))
    step_std = changes.std(0)  # one-step changes within episodes, for the synthetic random walks
    # One episode in five (and its synthetic versions) watches the fusion fit for early stopping.
    watched = set(range(0, len(fusion_part), 5)) if len(fusion_part) > 1 else set()

    def rows_of(episodes: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [fusion_part[i] for i in episodes]
        inside = [_perspective_rows(net, e.features, e.features[-1]) for e, _ in parts]
        outside = [_perspective_rows(net, x, e.features[-1]) for e, _ in parts for x in _synthetic_ood(e.features, step_std, rng)]
        return (torch.as_tensor(np.concatenate(inside), dtype=torch.float32),
                torch.as_tensor(np.concatenate([np.clip(p, 0, 1) for _, p in parts]), dtype=torch.float32),
                torch.as_tensor(np.concatenate(outside), dtype=torch.float32))

    inside, target, outside = rows_of([i for i in range(len(fusion_part)) if i not in watched])
    val_inside, val_target, val_outside = rows_of(sorted(watched)) if watched else (inside, target, outside)
    net = net.to(dev)

    def fusion_loss(x_in: torch.Tensor, y: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        out_in, out_out = net.fusion(x_in.to(dev)), net.fusion(x_out.to(dev))
        phi_star = (out_in[:, :3].softmax(1) * x_in[:, :3].to(dev)).sum(1)
        logits = torch.cat([out_in[:, 3], out_out[:, 3]])
        wanted = torch.cat([torch.ones(len(x_in), device=dev), torch.zeros(len(x_out), device=dev)])
        return F.mse_loss(phi_star, y.to(dev)) + F.binary_cross_entropy_with_logits(logits, wanted)

    def fusion_batch() -> tuple[torch.Tensor, int]:
        i, j = rng.integers(len(inside), size=batch_size), rng.integers(len(outside), size=batch_size)
        return fusion_loss(inside[i], target[i], outside[j]), 2 * batch_size

    def fusion_validate() -> dict[str, float]:
        with torch.no_grad():
            return {"val_loss": float(fusion_loss(val_inside, val_target, val_outside))}

    # The fusion network is tiny and its rows cheap: it gets a larger step size than the hop predictor.
    fusion_fit = fit_loop(net.fusion, fusion_batch, fusion_validate, epochs=epochs, steps=steps, lr=10 * lr, patience=patience, desc="fusion",
                          unit="rows", logdir=None if logdir is None else os.path.join(logdir, "fusion"), progress=progress)
    model = TorchRewardModel(net.cpu().eval(), spec, {"name": "process_net", "kwargs": {
        "hidden": hidden, "fusion_hidden": fusion_hidden, "reference_rows": len(rows), "hop_form": hop_form}})
    report = {"kind": "process", "labels": getattr(provider, "name", str(labels)), "inputs": list(keys),
              "counts": {"train_episodes_labelled": len(labelled), "hop_episodes": len(hop_part),
                         "fusion_episodes": len(fusion_part), "val_episodes_labelled": len(held),
                         "reference_rows": len(rows)},
              "hop": hop_fit.report_fields("pairs"), "fusion": fusion_fit.report_fields("rows"),
              **held_out_quality(model, [e for e, _ in held], step_std, seed),
              "val_trajectory_ids": [t.id for t in val]}
    return save_fitted(model, out, report, env=recorded_env(trajectories), data=data, seed=seed,
                       embeddings=recorded_embeddings(trajectories, keys), detail_keys=("hop", "fusion", "val_trajectory_ids"))


def held_out_quality(model: TorchRewardModel, episodes: Sequence[Episode], step_std: np.ndarray, seed: int) -> dict[str, Any]:
    """Median Spearman(Phi*, time) up to the first success, mean confidence, and the confidence AUC
    against synthetic OOD versions of the same episodes; scored as online, goal = last frame."""
    potential = ProcessPotential(model, override=FusionOverride(gating="none"))
    keys = sorted(model.spec.inputs)
    rng = np.random.default_rng(seed + 2)
    net = model.net
    mean, std = net.mean.double().numpy(), net.std.double().numpy()
    rhos, inside, outside = [], [], []
    for episode in episodes:
        obs = episode.trajectory.obs
        frames = {k: np.asarray(obs[k]) for k in keys}
        scored = potential.score_episode(frames, gamma=1.0)
        end = int(np.flatnonzero(episode.success)[0]) if episode.success.any() else len(episode.success) - 1
        if end >= 2:
            rhos.append(spearman(scored.phi_star[: end + 1], np.arange(end + 1, dtype=np.float64)))
        inside.append(float(scored.confidence.mean()))
        goal = Goal.frame(episode.features[-1] * std + mean)
        for x in _synthetic_ood(episode.features, step_std, rng):
            ood = x * std + mean
            split = np.cumsum([int(np.prod(model.spec.inputs[k].shape)) for k in keys])[:-1]
            ood_frames = {k: part.reshape(len(x), *model.spec.inputs[k].shape) for k, part in zip(keys, np.split(ood, split, axis=1))}
            outside.append(float(potential.score_episode(ood_frames, gamma=1.0, goal=goal).confidence.mean()))
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return {"val_median_spearman": float(np.median(rhos)) if rhos else float("nan"), "val_episodes_scored": len(rhos),
            "val_mean_confidence": float(np.mean(inside)), "synthetic_ood_mean_confidence": float(np.mean(outside)),
            "val_confidence_auc_synthetic_ood": roc_auc(np.r_[inside, outside], labels)}


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect` (has positive/ and negative/)")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt); the report goes beside it")
    parser.add_argument("--inputs", nargs="+", default=None,
                        help="state or embedding keys the model reads (default: the data's state key, else its vector keys; never "
                             "images: embed them first)")
    parser.add_argument("--labels", default="success",
                        help="hop labels: success (recorded success flags), oracle (distance to the last frame's features) "
                             "or fn:MODULE:FUNCTION (your episode -> per-frame progress)")
    parser.add_argument("--hidden", type=int, default=128, help="hop predictor width")
    parser.add_argument("--fusion-hidden", type=int, default=32, help="fusion network width")
    parser.add_argument("--hop-form", choices=HOP_FORMS, default="anchored",
                        help="anchored: per-frame progress difference plus an antisymmetric pair term (a hop to "
                             "the same frame is 0; orders frames no demonstration visited); pairwise: one pair network")
    parser.add_argument("--fusion-fraction", type=float, default=0.25, help="share of labelled training episodes kept for the fusion fit")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass over the frames)")
    add_fit_arguments(parser, batch_size=256, images=False)


def run(args: argparse.Namespace) -> int:
    out = fit_process(args.data, args.out, inputs=args.inputs, labels=args.labels, hidden=args.hidden,
                      fusion_hidden=args.fusion_hidden, hop_form=args.hop_form, fusion_fraction=args.fusion_fraction,
                      steps_per_epoch=args.steps_per_epoch, **fit_arguments(args))
    report = json.loads(report_path(out, ".report.json").read_text())
    print(f"wrote {out}\n  held-out median Spearman(Phi*, time) {report['val_median_spearman']:.4f} over "
          f"{report['val_episodes_scored']} episodes; confidence {report['val_mean_confidence']:.3f} held-out vs "
          f"{report['synthetic_ood_mean_confidence']:.3f} synthetic OOD (AUC {report['val_confidence_auc_synthetic_ood']:.3f})\n"
          f"  use it as a potential: rewardswap train-agent --pbrs {out} --process-goal obs:KEY|info:KEY|fn:MODULE:FUNCTION|frame:FILE.npy")
    return 0


def _not_a_reward(venv: Any, model: Any, output: str | None = None) -> Any:
    raise ValueError("a process reward model is a shaping potential: pass it as --pbrs PATH with --process-goal "
                     "(and --reward sparse or env), not as --reward process:PATH")


register_reward_kind(RewardKind("process", "hop predictor + fused progress perspectives, a PBRS potential (seed 004)",
                                add_arguments, run, wrapper=_not_a_reward, default_output="progress"))
