"""Fit a Bradley-Terry preference reward model: a per-step reward learned from segment pairs.

``P(A > B) = sigmoid(beta * (R(A) - R(B)))`` where ``R`` is the sum of the model's per-step
rewards over a segment; the loss is binary cross-entropy against the label (1: A preferred,
0: B preferred, 0.5: a tie).

**Which frame pays a step.** Step ``t`` moves the env from observation ``t`` to ``t+1`` and
``rewards[t]`` is what the env paid for it, so the model's reward for step ``t`` is read from
observation ``t+1`` (with its causal window), as ``LearnedReward`` scores the observation a step
returns. A segment of ``L`` steps starting at step ``s`` covers ``rewards[s : s+L]`` and
observations ``s+1 .. s+L``.

**Labels.**

* ``preferences=None``: synthetic labels from the recorded env return. Random pairs of
  ``segment_length``-step segments (from trajectories with at least that many steps) are labelled
  by comparing ``rewards[s : s+L].sum()``; |difference| <= ``tie_tolerance`` is a tie.
* ``preferences="prefs.csv"``: a CSV with a header naming at least ``a,b,label`` (trajectory ids;
  label in {0, 0.5, 1}) and optionally ``a_start,b_start`` (first step of a ``segment_length``
  segment in each). Without start columns each side is its whole trajectory.

Pairs are split **by trajectory**: a held-out pair has both sides in held-out trajectories
(CSV pairs that straddle the split are dropped and counted). The checkpoint is a per-step
reward model (``spec.output="reward"``) for ``LearnedReward(output="raw")``.

>>> synthetic_label(np.array([1.0, 2.0]), np.array([0.5, 0.5]), tie_tolerance=1e-6)
1.0
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.frames import FramesLike, as_frame_sampling
from reward_wrappers.models.networks import TorchRewardModel, batch_to_tensors
from reward_wrappers.sb3 import VecLearnedReward
from trainers.kinds import RewardKind, register_reward_kind
from trainers.common import (add_fit_arguments, add_frame_arguments, fit_arguments, frame_sampling, report_path, resolve_device,
                             seed_everything)
from trainers.data import (DataLike, augment_images, choose_inputs, gather_windows, input_specs, load_buffers,
                           recorded_embeddings, recorded_env, split_by_trajectory, state_statistics)
from trainers.evaluate import pair_metrics
from trainers.loop import fit_loop, save_fitted
from trainers.metrics import spearman

LABELS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Segment:
    """Steps ``start .. start+length-1`` of trajectory ``traj`` (an index into a split's list)."""

    traj: int
    start: int
    length: int

    def frames(self) -> np.ndarray:
        """Observations that pay the segment's steps: ``start+1 .. start+length``."""
        return np.arange(self.start + 1, self.start + self.length + 1)


@dataclass
class PairSet:
    a: list[Segment]
    b: list[Segment]
    label: np.ndarray  # (N,) in {0, 0.5, 1}

    def __len__(self) -> int:
        return len(self.label)


def synthetic_label(rewards_a: np.ndarray, rewards_b: np.ndarray, tie_tolerance: float) -> float:
    """1.0 if segment A earned more env reward than B, 0.0 if less, 0.5 within ``tie_tolerance``."""
    diff = float(np.sum(rewards_a, dtype=np.float64) - np.sum(rewards_b, dtype=np.float64))
    return 0.5 if abs(diff) <= tie_tolerance else float(diff > 0)


def synthetic_pairs(trajectories: Sequence[Any], n_pairs: int, segment_length: int, tie_tolerance: float, rng: np.random.Generator) -> PairSet:
    """``n_pairs`` random segment pairs labelled by their recorded env return."""
    eligible = [i for i, t in enumerate(trajectories) if len(t.rewards) >= segment_length]
    a, b, labels = [], [], np.empty(n_pairs)
    for p in range(n_pairs):
        sides = []
        for _ in range(2):
            ti = eligible[int(rng.integers(len(eligible)))]
            start = int(rng.integers(len(trajectories[ti].rewards) - segment_length + 1))
            sides.append(Segment(ti, start, segment_length))
        a.append(sides[0])
        b.append(sides[1])
        ra = np.asarray(trajectories[sides[0].traj].rewards[sides[0].start : sides[0].start + segment_length])
        rb = np.asarray(trajectories[sides[1].traj].rewards[sides[1].start : sides[1].start + segment_length])
        labels[p] = synthetic_label(ra, rb, tie_tolerance)
    return PairSet(a, b, labels)


def read_preference_csv(path: str | os.PathLike, trajectories: Sequence[Any], segment_length: int) -> list[tuple[Segment, Segment, float, int]]:
    """Parse ``a,b,label[,a_start,b_start]`` rows into segment pairs (with their CSV line).

    Errors name the file and line: unknown trajectory ids, labels outside {0, 0.5, 1}, starts
    outside the trajectory.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file {path} does not exist")
    by_id = {str(getattr(t, "id", t.path)): i for i, t in enumerate(trajectories)}
    rows: list[tuple[Segment, Segment, float, int]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("a", "b", "label") if c not in header]
        if missing:
            raise ValueError(f"{path} line 1: header {header} lacks columns {missing}; expected a,b,label[,a_start,b_start]")
        has_starts = "a_start" in header and "b_start" in header
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            try:
                label = float(row["label"])
            except ValueError:
                raise ValueError(f"{path} line {line}: label {row['label']!r} is not a number in {{0, 0.5, 1}}") from None
            if label not in LABELS:
                raise ValueError(f"{path} line {line}: label {row['label']!r} not in {{0, 0.5, 1}}")
            sides = []
            for side in ("a", "b"):
                traj_id = row[side]
                if traj_id not in by_id:
                    known = sorted(by_id)[:5]
                    raise ValueError(f"{path} line {line}: trajectory id {traj_id!r} ({side}) is not in the data ({len(by_id)} trajectories, e.g. {known})")
                ti = by_id[traj_id]
                n_steps = len(trajectories[ti].rewards)
                if has_starts and row.get(f"{side}_start", "") != "":
                    try:
                        start = int(row[f"{side}_start"])
                    except ValueError:
                        raise ValueError(f"{path} line {line}: {side}_start {row[f'{side}_start']!r} is not an integer") from None
                    if not 0 <= start <= n_steps - segment_length:
                        raise ValueError(
                            f"{path} line {line}: {side}_start={start} with segment_length={segment_length} does not fit "
                            f"trajectory {traj_id!r} of {n_steps} steps"
                        )
                    sides.append(Segment(ti, start, segment_length))
                else:
                    if n_steps == 0:
                        raise ValueError(f"{path} line {line}: trajectory {traj_id!r} has no steps")
                    sides.append(Segment(ti, 0, n_steps))
            rows.append((sides[0], sides[1], label, line))
    if not rows:
        raise ValueError(f"{path} holds no preference rows")
    return rows


def csv_pairs_by_split(rows: Sequence[tuple[Segment, Segment, float, int]], trajectories: Sequence[Any], train: Sequence[Any], val: Sequence[Any]) -> tuple[PairSet, PairSet, int]:
    """Keep pairs whose both sides are in one split (indices remapped to that split); count the rest."""
    where = {id(t): ("train", i) for i, t in enumerate(train)} | {id(t): ("val", i) for i, t in enumerate(val)}
    sets = {"train": PairSet([], [], np.empty(0)), "val": PairSet([], [], np.empty(0))}
    labels: dict[str, list[float]] = {"train": [], "val": []}
    straddling = 0
    for seg_a, seg_b, label, _line in rows:
        split_a, ia = where[id(trajectories[seg_a.traj])]
        split_b, ib = where[id(trajectories[seg_b.traj])]
        if split_a != split_b:
            straddling += 1
            continue
        sets[split_a].a.append(Segment(ia, seg_a.start, seg_a.length))
        sets[split_a].b.append(Segment(ib, seg_b.start, seg_b.length))
        labels[split_a].append(label)
    for name in sets:
        sets[name].label = np.asarray(labels[name], dtype=np.float64)
    return sets["train"], sets["val"], straddling


def gather_segments(trajectories: Sequence[Any], segments: Sequence[Segment], keys: Sequence[str], window: FramesLike) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Frames (with causal windows) of every segment, flattened, and each frame's segment index."""
    sampling = as_frame_sampling(window)
    traj_ids, frames, owner = [], [], []
    for s, seg in enumerate(segments):
        f = seg.frames()
        traj_ids.append(np.full(len(f), seg.traj))
        frames.append(f if sampling.frames == 1 else sampling.batch_indices(f))
        owner.append(np.full(len(f), s))
    batch = gather_windows(trajectories, np.concatenate(traj_ids), np.concatenate(frames), keys)
    return batch, np.concatenate(owner)


def segment_returns(net: torch.nn.Module, trajectories: Sequence[Any], segments: Sequence[Segment], keys: Sequence[str], window: FramesLike, device: torch.device, augment_rng: np.random.Generator | None = None) -> torch.Tensor:
    """``R(segment)`` = sum of per-step predicted rewards, ``(len(segments),)``."""
    batch, owner = gather_segments(trajectories, segments, keys, window)
    if augment_rng is not None:
        augment_images(batch, [k for k in keys if batch[k].ndim >= 4 and batch[k].dtype == np.uint8], augment_rng)
    rewards = net(batch_to_tensors(batch, device))[:, 0]
    return torch.zeros(len(segments), device=device, dtype=rewards.dtype).index_add(0, torch.as_tensor(owner, device=device), rewards)


def bradley_terry_loss(return_a: torch.Tensor, return_b: torch.Tensor, label: torch.Tensor, beta: float) -> torch.Tensor:
    """BCE of ``sigmoid(beta * (R(A) - R(B)))`` against the label (ties = 0.5).

    >>> float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.5]), 1.0))  # log 2
    0.6931471824645996
    """
    return F.binary_cross_entropy_with_logits(beta * (return_a - return_b), label)


def _evaluate(net: torch.nn.Module, trajectories: Sequence[Any], pairs: PairSet, keys: Sequence[str], window: FramesLike, beta: float, device: torch.device, batch_size: int) -> dict[str, Any]:
    ra, rb = [], []
    with torch.no_grad():
        for s in range(0, len(pairs), batch_size):
            ra.append(segment_returns(net, trajectories, pairs.a[s : s + batch_size], keys, window, device).cpu())
            rb.append(segment_returns(net, trajectories, pairs.b[s : s + batch_size], keys, window, device).cpu())
    return_a, return_b = torch.cat(ra).double(), torch.cat(rb).double()
    loss = float(bradley_terry_loss(return_a, return_b, torch.as_tensor(pairs.label), beta))
    return {"loss": loss, **pair_metrics(return_a.numpy(), return_b.numpy(), pairs.label), "return_a": return_a.numpy(), "return_b": return_b.numpy()}


def fit_preference(
    data: DataLike,
    out: str | os.PathLike,
    *,
    preferences: str | os.PathLike | None = None,
    segment_length: int = 25,
    inputs: Sequence[str] | None = None,
    window: FramesLike = 1,
    beta: float = 1.0,
    num_pairs: int = 2000,
    num_val_pairs: int = 500,
    tie_tolerance: float = 1e-6,
    encoder: str = "cnn",
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    augment: bool = True,
    patience: int = 5,
    hidden: int = 256,
    seed: int = 0,
    device: str = "auto",
    logdir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Fit a per-step reward by Bradley-Terry on segment pairs; return the checkpoint path.

    ``batch_size`` counts pairs. With synthetic labels ``num_pairs`` training pairs and
    ``num_val_pairs`` held-out pairs are drawn once (seeded). Writes ``<out>.report.json`` with
    held-out pair accuracy, pair-AUC, BT loss and, for synthetic labels, the Spearman between
    predicted and recorded segment returns.

    >>> fit_preference("buffers/", "pref.pt", inputs=("state",), segment_length=10)  # doctest: +SKIP
    PosixPath('pref.pt')
    """
    rng = seed_everything(seed)
    torch_device = resolve_device(device)
    if segment_length < 1 or beta <= 0:
        raise ValueError(f"segment_length must be >= 1 and beta > 0; got {segment_length}, {beta}")
    trajectories = load_buffers(data)
    inputs = choose_inputs(trajectories, inputs)
    specs = input_specs(trajectories, inputs)
    embeddings = recorded_embeddings(trajectories, inputs)  # checked now: a disagreement would fail after training
    train, val = split_by_trajectory(trajectories, val_fraction, seed)

    straddling = 0
    if preferences is None:
        for name, split in (("train", train), ("val", val)):
            lengths = [len(t.rewards) for t in split]
            if sum(n >= segment_length for n in lengths) < 1:
                raise ValueError(
                    f"segment_length={segment_length}, but none of the {len(split)} {name} trajectories has that many steps "
                    f"(longest: {max(lengths, default=0)}); lower --segment-length or record longer episodes"
                )
        train_pairs = synthetic_pairs(train, num_pairs, segment_length, tie_tolerance, rng)
        val_pairs = synthetic_pairs(val, num_val_pairs, segment_length, tie_tolerance, np.random.default_rng(seed + 1))
        label_source = "synthetic: recorded env return"
    else:
        rows = read_preference_csv(preferences, trajectories, segment_length)
        train_pairs, val_pairs, straddling = csv_pairs_by_split(rows, trajectories, train, val)
        if len(train_pairs) == 0 or len(val_pairs) == 0:
            raise ValueError(
                f"{preferences}: after splitting by trajectory, {len(train_pairs)} train and {len(val_pairs)} held-out pairs remain "
                f"({straddling} pairs straddle the split and were dropped); label more pairs"
            )
        label_source = f"csv: {os.fspath(preferences)}"

    window = as_frame_sampling(window)
    spec = ModelSpec(inputs=specs, **window.spec_fields(), output="reward", extra={"beta": beta, "segment_length": segment_length, "labels": label_source})
    model = TorchRewardModel.build(spec, encoder=encoder, hidden=hidden)
    net = model.net.to(torch_device)
    for key, inp in specs.items():
        if len(inp.shape) == 1:
            net.set_state_normalization(key, *state_statistics(train, key))

    steps = max(1, math.ceil(len(train_pairs) / batch_size))

    def epochs_of_batches() -> Iterator[np.ndarray]:
        while True:  # a fresh permutation of the pairs each epoch: fit_loop draws exactly `steps` batches per epoch
            order = rng.permutation(len(train_pairs))
            for step in range(steps):
                yield order[step * batch_size : (step + 1) * batch_size]

    batches = epochs_of_batches()

    def train_batch() -> tuple[torch.Tensor, int]:
        rows = next(batches)
        aug = rng if augment else None
        return_a = segment_returns(net, train, [train_pairs.a[i] for i in rows], inputs, window, torch_device, aug)
        return_b = segment_returns(net, train, [train_pairs.b[i] for i in rows], inputs, window, torch_device, aug)
        label = torch.as_tensor(train_pairs.label[rows], dtype=return_a.dtype, device=torch_device)
        return bradley_terry_loss(return_a, return_b, label, beta), len(rows)

    def validate() -> dict[str, float]:
        held_out = _evaluate(net, val, val_pairs, inputs, window, beta, torch_device, batch_size * 4)
        return {"val_loss": held_out["loss"], "val_pair_accuracy": held_out["accuracy"], "val_pair_auc": held_out["auc"]}

    fitted = fit_loop(net, train_batch, validate, epochs=epochs, steps=steps, lr=lr, weight_decay=weight_decay,
                      patience=patience, desc="preference", unit="pairs", logdir=logdir, progress=progress,
                      postfix=("val_loss", "val_pair_accuracy"))

    held_out = _evaluate(net, val, val_pairs, inputs, window, beta, torch_device, batch_size * 4)
    report: dict[str, Any] = {
        "kind": "preference",
        "labels": label_source,
        "inputs": list(inputs),
        **window.spec_fields(),
        "segment_length": segment_length,
        "beta": beta,
        "encoder": encoder if any(len(v.shape) == 3 for v in specs.values()) else None,  # state-only: none
        "seed": seed,
        "val_loss": held_out["loss"],
        "val_pair_accuracy": held_out["accuracy"],
        "val_pair_auc": held_out["auc"],
        "counts": {
            "trajectories": len(trajectories),
            "train_trajectories": len(train),
            "val_trajectories": len(val),
            "train_pairs": len(train_pairs),
            "val_pairs": len(val_pairs),
            "val_ties": held_out["ties"],
            "pairs_dropped_straddling_split": straddling,
            "train_trajectories_long_enough": sum(len(t.rewards) >= segment_length for t in train),
            "val_trajectories_long_enough": sum(len(t.rewards) >= segment_length for t in val),
        },
        **fitted.report_fields("pairs"),
        "val_trajectory_ids": [str(getattr(t, "id", t.path)) for t in val],
    }
    if preferences is None:
        true_returns = np.array([np.sum(val[s.traj].rewards[s.start : s.start + s.length]) for s in val_pairs.a + val_pairs.b])
        report["val_return_spearman"] = spearman(np.r_[held_out["return_a"], held_out["return_b"]], true_returns)
    return save_fitted(model, out, report, env=recorded_env(trajectories), data=data, seed=seed, embeddings=embeddings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect` (has positive/ and negative/)")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt); the report goes beside it")
    parser.add_argument("--preferences", default=None, help="CSV a,b,label[,a_start,b_start] (trajectory ids, label in {0,0.5,1}); default: synthetic labels from the recorded env return")
    parser.add_argument("--segment-length", type=int, default=25, help="steps per segment")
    parser.add_argument("--inputs", nargs="+", default=None, help="observation keys the reward reads (default: the data's image keys, else its state)")
    add_frame_arguments(parser, window=1, window_help="frames per step the model reads (1: an image or state model)")
    parser.add_argument("--beta", type=float, default=1.0, help="Bradley-Terry inverse temperature")
    parser.add_argument("--num-pairs", type=int, default=2000, help="synthetic training pairs")
    parser.add_argument("--num-val-pairs", type=int, default=500, help="synthetic held-out pairs")
    parser.add_argument("--encoder", choices=["cnn", "resnet10"], default="cnn", help="image encoder")
    parser.add_argument("--hidden", type=int, default=256)
    add_fit_arguments(parser, batch_size=32, batch_help="pairs per batch")


def run(args: argparse.Namespace) -> int:
    out = fit_preference(
        args.data, args.out, preferences=args.preferences, segment_length=args.segment_length, inputs=args.inputs,
        window=frame_sampling(args), beta=args.beta, num_pairs=args.num_pairs, num_val_pairs=args.num_val_pairs, encoder=args.encoder,
        hidden=args.hidden, **fit_arguments(args),
    )
    report = json.loads(report_path(out, ".report.json").read_text())
    print(
        f"wrote {out}\n  held-out pair accuracy {report['val_pair_accuracy']:.4f}  pair-AUC {report['val_pair_auc']:.4f}  "
        f"over {report['counts']['val_pairs']} pairs ({report['labels']})\n  report {report_path(out, '.report.json')}"
    )
    return 0


register_reward_kind(RewardKind('preference', 'Bradley-Terry preference reward model', add_arguments, run, wrapper=VecLearnedReward, default_output='raw'))
