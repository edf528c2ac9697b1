"""Fit a progress reward model: ReWiND-style progress regression, or SARM-style stages.

The labels, stage sources and window sampler (what a progress model is trained to predict, and
why) live in :mod:`trainers.progress_targets`; this module fits the network with the shared
loop (:mod:`trainers.loop`) and measures it on held-out episodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.networks import TorchRewardModel, batch_to_tensors
from reward_wrappers.sb3 import VecProgressReward
from trainers.kinds import RewardKind, register_reward_kind
from reward_wrappers.models.frames import FramesLike, as_frame_sampling
from trainers.common import (add_fit_arguments, add_frame_arguments, fit_arguments, frame_sampling, report_path, resolve_device,
                             seed_everything)
from trainers.data import (DataLike, augment_images, choose_inputs, gather_windows, input_specs, load_buffers, recorded_env, recorded_embeddings,
                           split_by_trajectory, state_statistics)
from trainers.evaluate import first_success_frame, network_outputs, progress_quality, stage_accuracy
from trainers.loop import fit_loop, save_fitted
from trainers.progress_targets import (Demo, StageSource, WindowBatch, trajectory_name, fit_stage_priors, sample_windows,
                                       stage_targets)

# --------------------------------------------------------------------------- training
def progress_loss(net: torch.nn.Module, batch: dict[str, torch.Tensor], target: WindowBatch, head_weights: torch.Tensor) -> torch.Tensor:
    """MSE on progress (ReWiND) or stage cross-entropy + MSE on tau of the true stage (SARM).

    ``head_weights`` ``(E, B)`` are per-head bootstrap weights (all ones for a single head).
    """
    device = head_weights.device
    stage_logits, tau_logits = net.head_outputs(batch)  # (E, B, K) each
    if stage_logits is None:
        y = torch.as_tensor(target.progress, dtype=torch.float32, device=device)
        per_sample = (torch.sigmoid(tau_logits[..., 0]) - y) ** 2
    else:
        stage = torch.as_tensor(target.stage, device=device)
        tau = torch.as_tensor(target.tau, dtype=torch.float32, device=device)
        n_heads = stage_logits.shape[0]
        ce = F.cross_entropy(stage_logits.flatten(0, 1), stage.repeat(n_heads), reduction="none").view(n_heads, -1)
        tau_of_true = torch.sigmoid(tau_logits.gather(-1, stage.expand(n_heads, -1)[..., None]).squeeze(-1))
        per_sample = ce + (tau_of_true - tau) ** 2
    return (per_sample * head_weights).sum(dim=1).div(head_weights.sum(dim=1).clamp_min(1.0)).mean()


def fit_progress(
    data: DataLike,
    out: str | os.PathLike,
    *,
    inputs: Sequence[str] | None = None,
    window: FramesLike = 8,
    rewind: float = 0.8,
    stages: str | os.PathLike | None = None,
    max_start: float = 0.0,
    failure_fraction: float = 0.0,
    ensemble: int = 1,
    encoder: str = "cnn",
    trunk: str = "mlp",
    transformer: dict[str, int] | None = None,
    text: str | os.PathLike | Sequence[float] | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    augment: bool = True,
    patience: int = 5,
    steps_per_epoch: int | None = None,
    hidden: int = 256,
    seed: int = 0,
    device: str = "auto",
    logdir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Fit a progress (or stage-aware progress) model on the successful trajectories of ``data``.

    Writes the checkpoint to ``out`` (``spec.output="progress"``, causal ``window``,
    ``spec.has_confidence`` when ``ensemble > 1``) and ``<out>.report.json`` with held-out
    figures: median Spearman(progress, time) over held-out successful episodes, the AUC of final
    progress (successful vs failed held-out episodes), stage accuracy in stage mode, confidence
    on held-out frames, counts and timing. Returns the checkpoint path.

    ``failure_fraction`` (default 0: ReWiND trains on successful demos only) is the share of
    training windows taken from *failed* trajectories with target 0. Use it when the model is a
    PBRS potential for an agent that explores: a demos-only model has never seen aimless motion
    and often scores it by elapsed time (high), which pays the agent for wandering.

    >>> fit_progress("buffers/", "progress.pt", inputs=("state",), stages="info:has_key")  # doctest: +SKIP
    PosixPath('progress.pt')
    """
    rng = seed_everything(seed)
    torch_device = resolve_device(device)
    window = as_frame_sampling(window)  # raises on a window below 1
    if not 0.0 <= rewind <= 1.0 or not 0.0 <= max_start < 1.0:
        raise ValueError(f"rewind must be in [0, 1] and max_start in [0, 1); got rewind={rewind}, max_start={max_start}")
    if not 0.0 <= failure_fraction < 1.0:
        raise ValueError(f"failure_fraction must be in [0, 1), got {failure_fraction}")
    trajectories = load_buffers(data)
    inputs = choose_inputs(trajectories, inputs)
    specs = input_specs(trajectories, inputs)
    embeddings = recorded_embeddings(trajectories, inputs)  # trajectories embedded by two backbones fail here, before training
    n_success = sum(first_success_frame(t.labels) is not None for t in trajectories)
    if n_success < 2:
        raise ValueError(
            f"{n_success} of {len(trajectories)} trajectories reach success; progress models train on successful "
            "trajectories only and need at least 2 (one to train, one to validate): record expert demos, e.g. "
            "`rewardswap collect --policy expert`"
        )
    stage_source = StageSource.parse(stages) if stages is not None else None
    train, val = split_by_trajectory(trajectories, val_fraction, seed, stratify=lambda t: first_success_frame(t.labels) is not None)

    # Demos: successful training trajectories cut at their first success frame.
    demo_starts: list[tuple[int, list[int]]] = []
    demos: list[Demo] = []
    for index, traj in enumerate(train):
        end = first_success_frame(traj.labels)
        if end is None:
            continue
        starts = stage_source.starts(traj, end + 1, required=True) if stage_source else []
        labels = np.asarray(traj.labels)
        held = np.flatnonzero(labels[end + 1 :] > 0.5) + end + 1
        demos.append(Demo(index, end + 1, held=held if len(held) else None))
        demo_starts.append((end + 1, starts))
    if not demos:
        raise ValueError("the training split holds no successful trajectory; record more successful trajectories")
    failures = _failed(train) if failure_fraction > 0 else []
    if failure_fraction > 0 and not failures:
        raise ValueError(f"failure_fraction={failure_fraction} but the training split holds no failed trajectory; "
                         "record some (e.g. random or noisy policies) or set failure_fraction=0")
    priors = fit_stage_priors(demo_starts) if stage_source else None
    if stage_source is not None:
        for demo, (length, starts) in zip(demos, demo_starts):
            demo.stage, demo.tau = stage_targets(length, starts)
    n_stages = stage_source.n_stages if stage_source else 1

    extra = {
        "label": "ReWiND (i - a + 1) / (T - a), T = first success frame + 1",
        "rewind": rewind,
        "max_start": max_start,
        "failure_fraction": failure_fraction,
        "stages": n_stages,
    }
    if stage_source is not None:
        extra.update(stage_source=stage_source.description, stage_priors=[float(p) for p in priors])
    spec = ModelSpec(inputs=specs, **window.spec_fields(), output="progress", has_confidence=ensemble > 1, extra=extra)
    text_vector = read_text_embedding(text)
    if text_vector is not None and trunk != "transformer":
        raise ValueError("a task-text embedding enters the model as a token: it needs trunk='transformer'")
    arch: dict[str, Any] = {"trunk": trunk} if trunk != "mlp" else {}
    if trunk == "transformer":
        arch["transformer"] = {**(transformer or {}), **({"text": text_vector} if text_vector is not None else {})}
    model = TorchRewardModel.build(
        spec, "progress_net", encoder=encoder, hidden=hidden, ensemble=ensemble,
        stage_priors=[float(p) for p in priors] if priors is not None else None, **arch,
    )
    net = model.net.to(torch_device)
    for key, inp in specs.items():
        if len(inp.shape) == 1:
            net.set_state_normalization(key, *state_statistics([train[d.index] for d in demos], key))

    # A fixed validation sample drawn with the training recipe (rewind included), so the
    # validation loss measures the training objective on held-out demos.
    val_demos, val_targets = _held_out_demos(val, stage_source, priors)
    if not val_demos:
        raise ValueError("the validation split holds no successful trajectory; record more successful trajectories")
    val_rng = np.random.default_rng(seed + 1)
    n_val_frames = sum(d.length for d in val_demos)
    val_sample = sample_windows(val_demos, min(4096, max(512, 4 * n_val_frames)), window=window, rewind=rewind, max_start=max_start,
                                priors=priors, rng=val_rng, failures=_failed(val), failure_fraction=failure_fraction)

    steps = steps_per_epoch or max(1, math.ceil(sum(d.length for d in demos) / batch_size))
    image_keys = [k for k, v in specs.items() if len(v.shape) == 3]

    def train_batch() -> tuple[torch.Tensor, int]:
        target = sample_windows(demos, batch_size, window=window, rewind=rewind, max_start=max_start, priors=priors, rng=rng,
                                failures=failures, failure_fraction=failure_fraction)
        batch = gather_windows(train, target.traj, target.frames, inputs)
        if augment:
            augment_images(batch, image_keys, rng)
        # Poisson(1) bootstrap weights make the ensemble heads disagree where data is thin.
        weights = rng.poisson(1.0, (ensemble, batch_size)) if ensemble > 1 else np.ones((1, batch_size))
        loss = progress_loss(net, batch_to_tensors(batch, torch_device), target, torch.as_tensor(weights, dtype=torch.float32, device=torch_device))
        return loss, batch_size

    def validate() -> dict[str, float]:
        return {"val_loss": _sample_loss(net, val, val_sample, inputs, torch_device, batch_size * 2),
                **_held_out_quality(model, val, val_targets)}

    fitted = fit_loop(net, train_batch, validate, epochs=epochs, steps=steps, lr=lr, weight_decay=weight_decay,
                      patience=patience, desc="stage-progress" if stage_source else "progress", logdir=logdir,
                      progress=progress, postfix=("val_loss", "val_median_spearman"))

    final = _held_out_quality(model, val, val_targets, detailed=True)
    report = {
        "kind": "progress",
        "mode": "stage" if stage_source else "rewind",
        "inputs": list(inputs),
        **window.spec_fields(),
        "rewind": rewind,
        "max_start": max_start,
        "failure_fraction": failure_fraction,
        "stages": stage_source.description if stage_source else None,
        "n_stages": n_stages,
        "stage_priors": [float(p) for p in priors] if priors is not None else None,
        "ensemble": ensemble,
        "encoder": encoder if any(len(v.shape) == 3 for v in specs.values()) else None,  # state-only: none
        "seed": seed,
        "val_loss": _sample_loss(net, val, val_sample, inputs, torch_device, batch_size * 2),
        **final,
        "counts": {
            "trajectories": len(trajectories),
            "successful_trajectories": n_success,
            "train_trajectories": len(train),
            "val_trajectories": len(val),
            "train_demos": len(demos),
            "train_demo_frames": int(sum(d.length for d in demos)),
            "val_demos": len(val_demos),
            "val_window_samples": len(val_sample.progress),
        },
        **fitted.report_fields(),
        "val_trajectory_ids": [trajectory_name(t) for t in val],
    }
    return save_fitted(model, out, report, env=recorded_env(trajectories), data=data, seed=seed, embeddings=embeddings,
                       detail_keys=("history", "val_spearman_per_episode", "val_trajectory_ids"))


def _failed(trajectories: Sequence[Any]) -> list[tuple[int, int]]:
    """``(index, frames)`` of every trajectory that never reaches success."""
    return [(i, len(t.labels)) for i, t in enumerate(trajectories) if first_success_frame(t.labels) is None]


def _held_out_demos(
    val: Sequence[Any], stage_source: StageSource | None, priors: np.ndarray | None
) -> tuple[list[Demo], dict[int, np.ndarray]]:
    """Validation demos (successful) and per-trajectory stage targets for every annotated frame."""
    demos: list[Demo] = []
    targets: dict[int, np.ndarray] = {}
    for index, traj in enumerate(val):
        end = first_success_frame(traj.labels)
        n_frames = len(traj.labels) if end is None else end + 1
        if stage_source is not None:
            starts = stage_source.starts(traj, n_frames, required=end is not None)
            if starts is not None:
                targets[index] = np.searchsorted(np.asarray(starts), np.arange(n_frames), side="right")
            if end is not None:
                stage, tau = stage_targets(end + 1, starts)
                demos.append(Demo(index, end + 1, stage, tau))
        elif end is not None:
            demos.append(Demo(index, end + 1))
    return demos, targets


def _sample_loss(net: torch.nn.Module, trajectories: Sequence[Any], sample: WindowBatch, keys: Sequence[str], device: torch.device, batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(sample.progress), batch_size):
            part = WindowBatch(*(getattr(sample, f)[s : s + batch_size] for f in ("traj", "frames", "progress", "stage", "tau")))
            batch = batch_to_tensors(gather_windows(trajectories, part.traj, part.frames, keys), device)
            loss = progress_loss(net, batch, part, torch.ones((net.ensemble, len(part.progress)), device=device))
            total += loss.item() * len(part.progress)
            count += len(part.progress)
    return total / max(count, 1)


def _held_out_quality(model: TorchRewardModel, val: Sequence[Any], stage_targets_by_traj: dict[int, np.ndarray], detailed: bool = False) -> dict[str, Any]:
    """Progress and stage figures on every held-out trajectory (frames read causally)."""
    outputs = [network_outputs(model, traj) for traj in val]
    quality = progress_quality([o[:, 0] for o in outputs], val)
    result: dict[str, Any] = {f"val_{k}": v for k, v in quality.items()}
    if stage_targets_by_traj:
        success_pred, success_true, all_pred, all_true = [], [], [], []
        for index, target in stage_targets_by_traj.items():
            predicted = outputs[index][: len(target), 2:].argmax(axis=1)
            all_pred.append(predicted)
            all_true.append(target)
            if first_success_frame(val[index].labels) is not None:
                success_pred.append(predicted)
                success_true.append(target)
        result["val_stage_accuracy"] = stage_accuracy(np.concatenate(all_pred), np.concatenate(all_true))
        if success_pred:
            result["val_stage_accuracy_successful"] = stage_accuracy(np.concatenate(success_pred), np.concatenate(success_true))
        if detailed:
            result["val_stage_frames"] = int(sum(len(t) for t in all_true))
    if detailed:
        success = [first_success_frame(t.labels) is not None for t in val]
        conf_s = [o[: first_success_frame(t.labels) + 1, 1] for o, t, s in zip(outputs, val, success) if s]
        conf_f = [o[:, 1] for o, s in zip(outputs, success) if not s]
        result["val_mean_confidence_successful"] = float(np.mean(np.concatenate(conf_s))) if conf_s else float("nan")
        result["val_mean_confidence_failed"] = float(np.mean(np.concatenate(conf_f))) if conf_f else float("nan")
        from trainers.evaluate import episode_spearman

        result["val_spearman_per_episode"] = {
            trajectory_name(t): episode_spearman(o[:, 0], first_success_frame(t.labels))
            for o, t in zip(outputs, val)
            if first_success_frame(t.labels) is not None and first_success_frame(t.labels) >= 2
        }
    return result


def read_text_embedding(text: str | os.PathLike | Sequence[float] | None) -> list[float] | None:
    """A task-text embedding as a list of floats: a vector, or a 1-D ``.npy`` file (no pickle)."""
    if text is None:
        return None
    if isinstance(text, (str, os.PathLike)):
        path = pathlib.Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"text embedding {path} does not exist")
        vector = np.load(path, allow_pickle=False)
        where = str(path)
    else:
        vector, where = np.asarray(text, dtype=np.float64), "text embedding"
    if vector.ndim != 1 or len(vector) == 0 or not np.isfinite(vector).all():
        raise ValueError(f"{where}: expected a finite 1-D vector, got shape {vector.shape}")
    return [float(v) for v in vector]


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect` (has positive/ and negative/)")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt); the report goes beside it")
    parser.add_argument("--inputs", nargs="+", default=None, help="observation keys the model reads (default: the data's image keys, else its state)")
    add_frame_arguments(parser, window=8, window_help="frames of history the model reads (current frame last)")
    parser.add_argument("--rewind", type=float, default=0.8, help="probability of rewind augmentation per training sample")
    parser.add_argument("--max-start", type=float, default=0.0, help="ReWiND random clip start, as a fraction of the demo (0: clips start at the reset frame)")
    parser.add_argument("--stages", default=None, help="stage mode (SARM): 'info:KEY[,KEY2]' (recorded info flags) or an annotation JSON {trajectory id: [stage start frames]}")
    parser.add_argument("--failure-fraction", type=float, default=0.0,
                        help="share of training windows taken from failed trajectories with target 0 (for PBRS potentials; 0: demos only, as ReWiND)")
    parser.add_argument("--ensemble", type=int, default=1, help="number of heads; >1 adds a confidence output (1 - 2 * spread) for PBRS gating")
    parser.add_argument("--encoder", choices=["cnn", "resnet10"], default="cnn", help="image encoder")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--trunk", choices=["mlp", "transformer"], default="mlp",
                        help="what fuses the window's frames: an MLP over their concatenation, or a small causal transformer "
                             "(for frozen embeddings from `rewardswap embed`, with an optional task-text token)")
    parser.add_argument("--d-model", type=int, default=64, help="transformer width (--trunk transformer)")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers (--trunk transformer)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (--trunk transformer)")
    parser.add_argument("--text-embedding", default=None, metavar="FILE.npy",
                        help="the task's text embedding (a 1-D .npy you computed, e.g. with MiniLM); one token of the transformer")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass over the demo frames)")
    add_fit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out = fit_progress(
        args.data, args.out, inputs=args.inputs, window=frame_sampling(args), rewind=args.rewind, stages=args.stages,
        max_start=args.max_start, failure_fraction=args.failure_fraction, ensemble=args.ensemble, encoder=args.encoder,
        hidden=args.hidden, steps_per_epoch=args.steps_per_epoch, trunk=args.trunk,
        transformer={"d_model": args.d_model, "layers": args.layers, "heads": args.heads}, text=args.text_embedding,
        **fit_arguments(args),
    )
    report = json.loads(report_path(out, ".report.json").read_text())
    line = (
        f"wrote {out}\n  held-out median Spearman(progress, time) {report['val_median_spearman']:.4f} over "
        f"{report['val_episodes_success']} successful episodes; final-progress AUC {report['val_final_progress_auc']:.4f}"
    )
    if "val_stage_accuracy" in report:
        line += f"\n  held-out stage accuracy {report['val_stage_accuracy']:.4f} over {report['val_stage_frames']} frames"
    print(line + f"\n  report {report_path(out, '.report.json')}")
    return 0


register_reward_kind(RewardKind('progress', 'stage/progress regression (ReWiND / SARM style)', add_arguments, run, wrapper=VecProgressReward, default_output='progress'))
