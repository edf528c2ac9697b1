"""Fit a progress reward model: ReWiND-style progress regression, or SARM-style stages.

**What the labels mean in our trajectory format.** A trajectory has ``T_env + 1`` observations
(the reset frame first) and ``labels[t]`` is the success flag of observation ``t``. The *demo*
is the observations ``0..s`` where ``s`` is the first success frame, so the ReWiND demo length
is ``T = s + 1`` observations. Frames after the first success (an env that does not terminate
on success) are trained on only where success still holds, with progress 1.0 (in proportion to
their number), so the model also knows the inside of the success region: without them a raw
progress reward pays most at its edge. For a clip starting at frame ``a`` the label of frame ``i`` is

    progress(i) = (i - a + 1) / (T - a),        a <= i <= T - 1 = s

so progress is exactly 1.0 at the first success frame and ``1 / (T - a)`` at the clip's first
frame. **Rewind** (probability ``rewind`` per sample) cuts the clip at a random ``end`` in
``a+1..s`` and appends ``k`` frames played backwards, ``end-1, ..., end-k``, each with its own
(decreasing) label, so the model learns that undoing the task lowers progress.

**Stages (SARM).** With ``K`` stages and stage ``k`` covering frames ``s_k .. s_{k+1} - 1`` of the
demo (``s_0 = 0``, ``s_K = T``, ``n_k = s_{k+1} - s_k`` frames), the within-stage progress is
``tau(t) = (t - s_k + 1) / n_k`` (1.0 on the stage's last frame), the stage priors are
``a_k = mean over training demos of n_k / T`` and the target is ``y = P_{k-1} + a_k * tau`` with
``P_{k-1} = a_0 + ... + a_{k-1}``. With a single demo the stage target equals the ReWiND label
for ``a = 0``. The loss is cross-entropy on the stage plus MSE on ``tau`` of the true stage; at
run time the model outputs ``P_{k^-1} + a_{k^} * tau^`` (:class:`ProgressNet`).

Stage boundaries come from ``stages=``:

* ``"info:KEY[,KEY2,...]"``: recorded info flags; stage ``j`` starts at the first frame where
  ``KEY_j`` is true (``info:has_key`` on ``PointKeyDoor-v0``, ``info:is_grasped`` on PickCube).
* a path to a JSON object ``{"<trajectory id>": [s_1, ..., s_{K-1}], ...}`` of stage start
  frames (non-decreasing, ``0 <= s_j <= T``), one entry per successful trajectory.

**Causality.** The model reads a causal window of ``window`` frames ending at the current one
(:func:`~reward_wrappers.base.window_indices`), never a future frame, so the same checkpoint runs
online in ``ProgressReward`` and as a ``PBRS`` potential.

The default ``max_start=0.0`` starts every clip at the reset frame: ReWiND's random clip starts
make the label depend on where the clip began, which a model that sees only ``window`` frames
cannot know once the window has moved past the start; raise it to reproduce ReWiND exactly.

>>> progress_labels(4).tolist()
[0.25, 0.5, 0.75, 1.0]
>>> frames, labels = rewind_clip(4, start=1, end=3, rewind_steps=2)
>>> frames.tolist(), [round(x, 4) for x in labels.tolist()]
([1, 2, 3, 2, 1], [0.3333, 0.6667, 1.0, 0.6667, 0.3333])
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from reward_wrappers.base import ModelSpec, window_indices
from reward_wrappers.checkpoint import save_reward_model
from reward_wrappers.networks import TorchRewardModel, batch_to_tensors
from reward_wrappers.sb3 import VecProgressReward
from trainers.kinds import RewardKind, register_reward_kind
from collectors.atomic import write_json_atomic
from trainers.common import (
    EarlyStopping,
    Optimizer,
    add_fit_arguments,
    fit_arguments,
    make_writer,
    report_path,
    resolve_device,
    seed_everything,
)
from trainers.data import (DataLike, choose_inputs, gather_windows, input_specs, load_buffers, random_shift, recorded_env,
                           split_by_trajectory, state_statistics)
from trainers.evaluate import first_success_frame, network_outputs, progress_quality, stage_accuracy

SHIFT_PAD = 4  # pixels of random shift at 64x64, as in DrQ (same as the classifier)


# --------------------------------------------------------------------------- labels
def progress_labels(demo_length: int, start: int = 0) -> np.ndarray:
    """ReWiND labels ``(i - a + 1) / (T - a)`` for frames ``i = a..T-1`` of a demo of ``T`` frames.

    >>> progress_labels(5, start=2).tolist()
    [0.3333333333333333, 0.6666666666666666, 1.0]
    """
    if not 0 <= start < demo_length:
        raise ValueError(f"clip start {start} outside a demo of {demo_length} frames")
    i = np.arange(start, demo_length, dtype=np.float64)
    return (i - start + 1) / (demo_length - start)


def rewind_clip(demo_length: int, start: int, end: int, rewind_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and labels of a clip ``start..end`` followed by ``rewind_steps`` frames backwards.

    The rewound frames are ``end-1, end-2, ..., end-rewind_steps`` with their own labels, so
    the label sequence rises to ``end`` and then falls. ``rewind_steps=0`` is a plain clip.

    >>> rewind_clip(5, start=0, end=2, rewind_steps=2)[1].tolist()
    [0.2, 0.4, 0.6, 0.4, 0.2]
    """
    if not start <= end < demo_length:
        raise ValueError(f"clip end {end} must be in [{start}, {demo_length - 1}]")
    if not 0 <= rewind_steps <= end - start:
        raise ValueError(f"rewind_steps must be in [0, {end - start}], got {rewind_steps}")
    labels = progress_labels(demo_length, start)
    forward = np.arange(start, end + 1)
    backward = np.arange(end - 1, end - 1 - rewind_steps, -1)
    frames = np.r_[forward, backward].astype(np.int64)
    return frames, labels[frames - start]


def stage_targets(demo_length: int, stage_starts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame stage index and within-stage progress ``tau`` for frames ``0..T-1``.

    ``stage_starts`` are the first frames of stages ``1..K-1`` (stage 0 starts at frame 0).

    >>> stage, tau = stage_targets(6, [2])
    >>> stage.tolist(), tau.tolist()
    ([0, 0, 1, 1, 1, 1], [0.5, 1.0, 0.25, 0.5, 0.75, 1.0])
    """
    bounds = np.r_[0, np.asarray(stage_starts, dtype=np.int64), demo_length]
    t = np.arange(demo_length)
    stage = np.searchsorted(bounds[1:-1], t, side="right").astype(np.int64)
    lengths = np.diff(bounds)
    tau = (t - bounds[stage] + 1) / lengths[stage]
    return stage, tau.astype(np.float64)


def fit_stage_priors(demos: Sequence[tuple[int, Sequence[int]]]) -> np.ndarray:
    """Stage priors ``a_k``: mean fraction of demo frames in stage ``k`` over ``(T, starts)`` demos.

    >>> fit_stage_priors([(6, [2]), (10, [5])]).tolist()
    [0.41666666666666663, 0.5833333333333333]
    """
    fractions = [np.diff(np.r_[0, np.asarray(starts, dtype=np.float64), length]) / length for length, starts in demos]
    return np.mean(fractions, axis=0)


def stage_progress(stage: np.ndarray, tau: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """SARM target ``P_{k-1} + a_k * tau``.

    >>> stage_progress(np.array([0, 1]), np.array([1.0, 0.5]), np.array([0.25, 0.75])).tolist()
    [0.25, 0.625]
    """
    priors = np.asarray(priors, dtype=np.float64)
    cumulative = np.r_[0.0, np.cumsum(priors)[:-1]]
    return cumulative[stage] + priors[stage] * tau


# --------------------------------------------------------------------------- stage sources
def _traj_name(traj: Any) -> str:
    return str(getattr(traj, "id", getattr(traj, "path", "?")))


def stage_starts_from_info(traj: Any, keys: Sequence[str], n_frames: int) -> list[int]:
    """Stage starts = first frame (among the first ``n_frames``) where each info flag is true.

    A flag that never turns true gives ``n_frames`` (an empty stage).
    """
    starts = []
    for key in keys:
        if key not in traj.info:
            raise KeyError(
                f"stages: trajectory {_traj_name(traj)} has no recorded info key {key!r}; recorded info keys: "
                f"{sorted(traj.info)} (record it with TrajectoryRecorder(info_keys=({key!r},)))"
            )
        flags = np.asarray(traj.info[key][:n_frames]).reshape(n_frames, -1)[:, 0].astype(np.float64) > 0.5
        hits = np.flatnonzero(flags)
        starts.append(int(hits[0]) if len(hits) else n_frames)
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise ValueError(
            f"stages: in trajectory {_traj_name(traj)} the flags {list(keys)} first turn true at frames {starts}; "
            "stage flags must turn true in the order given"
        )
    return starts


def load_stage_annotations(path: str | os.PathLike) -> dict[str, list[int]]:
    """Read ``{"<trajectory id>": [stage start frames], ...}``, checking types and counts."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage annotation file {path} does not exist (or pass stages='info:KEY')")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"stage annotation file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"stage annotation file {path} must be a non-empty JSON object mapping trajectory id -> list of stage start frames")
    out: dict[str, list[int]] = {}
    count: tuple[str, int] | None = None
    for traj_id, starts in raw.items():
        if not isinstance(starts, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in starts):
            raise ValueError(f"stage annotation file {path}: trajectory {traj_id!r}: expected a list of integer frame indices, got {starts!r}")
        if any(s < 0 for s in starts) or any(b < a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"stage annotation file {path}: trajectory {traj_id!r}: stage starts {starts} must be non-negative and non-decreasing")
        if count is None:
            count = (traj_id, len(starts))
        elif len(starts) != count[1]:
            raise ValueError(
                f"stage annotation file {path}: trajectory {traj_id!r} has {len(starts)} stage boundaries but "
                f"{count[0]!r} has {count[1]}; every trajectory needs the same number of stages"
            )
        out[str(traj_id)] = starts
    return out


@dataclass
class StageSource:
    """Where stage boundaries come from: info flags or an annotation file."""

    description: str
    info_keys: tuple[str, ...] = ()
    annotations: dict[str, list[int]] | None = None
    annotation_path: str | None = None

    @classmethod
    def parse(cls, stages: str | os.PathLike) -> "StageSource":
        text = os.fspath(stages)
        if text.startswith("info:"):
            keys = tuple(k.strip() for k in text[5:].split(",") if k.strip())
            if not keys:
                raise ValueError(f"stages={text!r} names no info key; use e.g. 'info:has_key'")
            return cls(text, info_keys=keys)
        return cls(text, annotations=load_stage_annotations(text), annotation_path=text)

    @property
    def n_stages(self) -> int:
        if self.annotations is not None:
            return len(next(iter(self.annotations.values()))) + 1
        return len(self.info_keys) + 1

    def starts(self, traj: Any, n_frames: int, required: bool) -> list[int] | None:
        """Stage starts for the first ``n_frames`` frames of ``traj`` (None if not annotated)."""
        if self.annotations is None:
            return stage_starts_from_info(traj, self.info_keys, n_frames)
        starts = self.annotations.get(_traj_name(traj))
        if starts is None:
            if required:
                raise KeyError(f"stage annotation file {self.annotation_path} has no entry for trajectory {_traj_name(traj)!r}")
            return None
        if starts and starts[-1] > n_frames:
            raise ValueError(
                f"stage annotation file {self.annotation_path}: trajectory {_traj_name(traj)!r}: stage start "
                f"{starts[-1]} is beyond its {n_frames} frames"
            )
        return list(starts)


# --------------------------------------------------------------------------- sampling
@dataclass
class Demo:
    """A successful training trajectory cut at its first success, with its per-frame targets."""

    index: int  # into the split's trajectory list
    length: int  # T = first success frame + 1
    stage: np.ndarray | None = None  # (T,) stage index, stage mode only
    tau: np.ndarray | None = None  # (T,) within-stage progress, stage mode only
    held: np.ndarray | None = None  # frames after T - 1 that are still successful (target 1.0)


@dataclass
class WindowBatch:
    traj: np.ndarray  # (B,) trajectory index
    frames: np.ndarray  # (B, W) or (B,) frame indices, causal over the (possibly rewound) clip
    progress: np.ndarray  # (B,) progress target
    stage: np.ndarray  # (B,) stage target (zeros without stages)
    tau: np.ndarray  # (B,) within-stage target (= progress without stages)


def sample_windows(
    demos: Sequence[Demo],
    n: int,
    *,
    window: int,
    rewind: float,
    max_start: float,
    priors: np.ndarray | None,
    rng: np.random.Generator,
    failures: Sequence[tuple[int, int]] = (),
    failure_fraction: float = 0.0,
) -> WindowBatch:
    """Draw ``n`` training windows: a demo, a clip (maybe rewound), a position in the clip.

    The window is causal *over the clip*: it holds the clip's frames up to the chosen position,
    the clip's first frame repeated when needed, exactly as the online model sees an episode.
    With ``failure_fraction > 0`` that share of the windows comes instead from ``failures``
    (``(trajectory index, frames)`` of failed trajectories), at a uniform frame, with target 0.
    """
    traj, frames = np.empty(n, np.int64), np.empty((n, window), np.int64)
    progress, stage, tau = np.empty(n), np.zeros(n, np.int64), np.empty(n)
    for b in range(n):
        if failures and rng.random() < failure_fraction:
            index, n_frames = failures[int(rng.integers(len(failures)))]
            traj[b], frames[b] = index, window_indices(int(rng.integers(n_frames)), window)
            progress[b] = tau[b] = 0.0
            continue
        demo = demos[int(rng.integers(len(demos)))]
        if demo.held is not None and len(demo.held) and rng.random() < len(demo.held) / (len(demo.held) + demo.length):
            # A frame where success still holds after the first success: progress stays 1.0.
            frame = int(demo.held[int(rng.integers(len(demo.held)))])
            traj[b], frames[b] = demo.index, window_indices(frame, window)
            progress[b] = tau[b] = 1.0
            if demo.stage is not None:
                stage[b] = demo.stage[-1]
                progress[b] = stage_progress(stage[b : b + 1], tau[b : b + 1], priors)[0]
            continue
        length = demo.length
        start = 0 if demo.stage is not None else int(rng.integers(int(max_start * (length - 1)) + 1))
        if length - start >= 2 and rng.random() < rewind:
            end = int(rng.integers(start + 1, length))
            steps = int(rng.integers(1, end - start + 1))
        else:
            end, steps = length - 1, 0
        clip, labels = rewind_clip(length, start, end, steps)
        position = int(rng.integers(len(clip)))
        traj[b] = demo.index
        frames[b] = clip[window_indices(position, window)]
        frame = int(clip[position])
        if demo.stage is not None:
            stage[b], tau[b] = demo.stage[frame], demo.tau[frame]
            progress[b] = stage_progress(stage[b : b + 1], tau[b : b + 1], priors)[0]
        else:
            progress[b] = tau[b] = labels[position]
    return WindowBatch(traj, frames[:, 0] if window == 1 else frames, progress, stage, tau)


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
    window: int = 8,
    rewind: float = 0.8,
    stages: str | os.PathLike | None = None,
    max_start: float = 0.0,
    failure_fraction: float = 0.0,
    ensemble: int = 1,
    encoder: str = "cnn",
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
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0.0 <= rewind <= 1.0 or not 0.0 <= max_start < 1.0:
        raise ValueError(f"rewind must be in [0, 1] and max_start in [0, 1); got rewind={rewind}, max_start={max_start}")
    if not 0.0 <= failure_fraction < 1.0:
        raise ValueError(f"failure_fraction must be in [0, 1), got {failure_fraction}")
    trajectories = load_buffers(data)
    inputs = choose_inputs(trajectories, inputs)
    specs = input_specs(trajectories, inputs)
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
    spec = ModelSpec(inputs=specs, window=window, output="progress", has_confidence=ensemble > 1, extra=extra)
    model = TorchRewardModel.build(
        spec, "progress_net", encoder=encoder, hidden=hidden, ensemble=ensemble,
        stage_priors=[float(p) for p in priors] if priors is not None else None,
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
    optimizer = Optimizer(net, lr, weight_decay, epochs * steps)
    writer = make_writer(logdir)
    stopper = EarlyStopping(patience)
    image_keys = [k for k, v in specs.items() if len(v.shape) == 3]
    history: list[dict[str, float]] = []
    frames_seen, train_seconds = 0, 0.0

    bar = tqdm(total=epochs * steps, desc="stage-progress" if stage_source else "progress", unit="batch",
               disable=None if progress else True)  # None: off when not a tty
    for epoch in range(epochs):
        net.train()
        epoch_start, losses = time.perf_counter(), []
        for _ in range(steps):
            target = sample_windows(demos, batch_size, window=window, rewind=rewind, max_start=max_start, priors=priors, rng=rng,
                                    failures=failures, failure_fraction=failure_fraction)
            batch = gather_windows(train, target.traj, target.frames, inputs)
            if augment:
                for key in image_keys:
                    batch[key] = random_shift(batch[key], SHIFT_PAD, rng)
            # Poisson(1) bootstrap weights make the ensemble heads disagree where data is thin.
            weights = rng.poisson(1.0, (ensemble, batch_size)) if ensemble > 1 else np.ones((1, batch_size))
            loss = progress_loss(net, batch_to_tensors(batch, torch_device), target, torch.as_tensor(weights, dtype=torch.float32, device=torch_device))
            losses.append(optimizer.step(loss))
            frames_seen += batch_size
            bar.update(1)
        train_seconds += time.perf_counter() - epoch_start

        net.eval()
        val_loss = _sample_loss(net, val, val_sample, inputs, torch_device, batch_size * 2)
        quality = _held_out_quality(model, val, val_targets)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss, **quality}
        history.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.4f}", val_loss=f"{val_loss:.4f}", spearman=f"{quality['val_median_spearman']:.3f}")
        if writer is not None:
            step = (epoch + 1) * steps
            writer.add_scalar("train/loss", record["train_loss"], step)
            writer.add_scalar("train/lr", optimizer.lr, step)
            writer.add_scalar("train/frames_per_second", steps * batch_size / max(time.perf_counter() - epoch_start, 1e-9), step)
            for k, v in record.items():
                if k.startswith("val_") and np.isfinite(v):
                    writer.add_scalar(k.replace("val_", "val/", 1), v, step)
        if stopper.update(epoch, val_loss, net):
            break
    bar.close()
    stopper.restore(net)
    net.eval()

    final = _held_out_quality(model, val, val_targets, detailed=True)
    report = {
        "kind": "progress",
        "mode": "stage" if stage_source else "rewind",
        "inputs": list(inputs),
        "window": window,
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
        "best_epoch": stopper.best_epoch,
        "epochs_run": len(history),
        "train_frames_per_second": frames_seen / max(train_seconds, 1e-9),
        "history": history,
        "val_trajectory_ids": [_traj_name(t) for t in val],
    }
    summary = {k: v for k, v in report.items() if k not in ("history", "val_spearman_per_episode", "val_trajectory_ids")}
    out = save_reward_model(model, out, metadata={"env": recorded_env(trajectories), "report": summary, "val_trajectory_ids": report["val_trajectory_ids"], "data": str(data) if isinstance(data, (str, os.PathLike)) else None, "seed": seed})
    write_json_atomic(report_path(out, ".report.json"), report)
    if writer is not None:
        writer.close()
    return out


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
            _traj_name(t): episode_spearman(o[:, 0], first_success_frame(t.labels))
            for o, t in zip(outputs, val)
            if first_success_frame(t.labels) is not None and first_success_frame(t.labels) >= 2
        }
    return result


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect` (has positive/ and negative/)")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt); the report goes beside it")
    parser.add_argument("--inputs", nargs="+", default=None, help="observation keys the model reads (default: the data's image keys, else its state)")
    parser.add_argument("--window", type=int, default=8, help="causal window: frames of history the model reads (current frame last)")
    parser.add_argument("--rewind", type=float, default=0.8, help="probability of rewind augmentation per training sample")
    parser.add_argument("--max-start", type=float, default=0.0, help="ReWiND random clip start, as a fraction of the demo (0: clips start at the reset frame)")
    parser.add_argument("--stages", default=None, help="stage mode (SARM): 'info:KEY[,KEY2]' (recorded info flags) or an annotation JSON {trajectory id: [stage start frames]}")
    parser.add_argument("--failure-fraction", type=float, default=0.0,
                        help="share of training windows taken from failed trajectories with target 0 (for PBRS potentials; 0: demos only, as ReWiND)")
    parser.add_argument("--ensemble", type=int, default=1, help="number of heads; >1 adds a confidence output (1 - 2 * spread) for PBRS gating")
    parser.add_argument("--encoder", choices=["cnn", "resnet10"], default="cnn", help="image encoder")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass over the demo frames)")
    add_fit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out = fit_progress(
        args.data, args.out, inputs=args.inputs, window=args.window, rewind=args.rewind, stages=args.stages,
        max_start=args.max_start, failure_fraction=args.failure_fraction, ensemble=args.ensemble, encoder=args.encoder,
        hidden=args.hidden, steps_per_epoch=args.steps_per_epoch, **fit_arguments(args),
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
