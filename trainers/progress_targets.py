"""Training targets of the progress kind: ReWiND labels, SARM stages and the window sampler.

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
(:func:`~reward_wrappers.models.base.window_indices`), never a future frame, so the same checkpoint runs
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

import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from reward_wrappers.models.frames import FramesLike, as_frame_sampling


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
def trajectory_name(traj: Any) -> str:
    return str(getattr(traj, "id", getattr(traj, "path", "?")))


def stage_starts_from_info(traj: Any, keys: Sequence[str], n_frames: int) -> list[int]:
    """Stage starts = first frame (among the first ``n_frames``) where each info flag is true.

    A flag that never turns true gives ``n_frames`` (an empty stage).
    """
    starts = []
    for key in keys:
        if key not in traj.info:
            raise KeyError(
                f"stages: trajectory {trajectory_name(traj)} has no recorded info key {key!r}; recorded info keys: "
                f"{sorted(traj.info)} (record it with TrajectoryRecorder(info_keys=({key!r},)))"
            )
        flags = np.asarray(traj.info[key][:n_frames]).reshape(n_frames, -1)[:, 0].astype(np.float64) > 0.5
        hits = np.flatnonzero(flags)
        starts.append(int(hits[0]) if len(hits) else n_frames)
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise ValueError(
            f"stages: in trajectory {trajectory_name(traj)} the flags {list(keys)} first turn true at frames {starts}; "
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
        starts = self.annotations.get(trajectory_name(traj))
        if starts is None:
            if required:
                raise KeyError(f"stage annotation file {self.annotation_path} has no entry for trajectory {trajectory_name(traj)!r}")
            return None
        if starts and starts[-1] > n_frames:
            raise ValueError(
                f"stage annotation file {self.annotation_path}: trajectory {trajectory_name(traj)!r}: stage start "
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
    window: FramesLike,
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
    sampling = as_frame_sampling(window)
    traj, frames = np.empty(n, np.int64), np.empty((n, sampling.frames), np.int64)
    progress, stage, tau = np.empty(n), np.zeros(n, np.int64), np.empty(n)
    for b in range(n):
        if failures and rng.random() < failure_fraction:
            index, n_frames = failures[int(rng.integers(len(failures)))]
            traj[b], frames[b] = index, sampling.indices(int(rng.integers(n_frames)))
            progress[b] = tau[b] = 0.0
            continue
        demo = demos[int(rng.integers(len(demos)))]
        if demo.held is not None and len(demo.held) and rng.random() < len(demo.held) / (len(demo.held) + demo.length):
            # A frame where success still holds after the first success: progress stays 1.0.
            frame = int(demo.held[int(rng.integers(len(demo.held)))])
            traj[b], frames[b] = demo.index, sampling.indices(frame)
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
        frames[b] = clip[sampling.indices(position)]
        frame = int(clip[position])
        if demo.stage is not None:
            stage[b], tau[b] = demo.stage[frame], demo.tau[frame]
            progress[b] = stage_progress(stage[b : b + 1], tau[b : b + 1], priors)[0]
        else:
            progress[b] = tau[b] = labels[position]
    return WindowBatch(traj, frames[:, 0] if sampling.frames == 1 else frames, progress, stage, tau)
