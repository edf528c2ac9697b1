"""Held-out quality figures for progress, stage and preference models (shared by reports and
``benchmarks/progress_quality.py``).

* Progress: per successful episode, Spearman(predicted progress, time) over frames ``0..s``
  (``s`` = first success frame); the AUC of the *final* progress (frame ``s`` for successes, the
  last frame otherwise) separating successful from failed episodes.
* Stages: accuracy of the predicted stage per frame.
* Preferences: pair accuracy and pair-AUC of ``R(A) - R(B)`` against the labels (ties excluded).

>>> import numpy as np
>>> round(episode_spearman(np.array([0.1, 0.3, 0.2, 0.9])), 6)
0.8
>>> pair_metrics(np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0]), np.array([1.0, 0.0, 0.5]))["accuracy"]
1.0
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from reward_wrappers.models.base import RewardModel
from reward_wrappers.models.frames import FramesLike, as_frame_sampling
from reward_wrappers.models.networks import TorchRewardModel, batch_to_tensors
from trainers.data import gather_windows
from trainers.metrics import roc_auc, spearman


def first_success_frame(labels: np.ndarray) -> int | None:
    """Index of the first observation labelled successful, or None.

    >>> first_success_frame(np.array([0, 0, 1, 1], np.float32)), first_success_frame(np.zeros(3))
    (2, None)
    """
    hits = np.flatnonzero(np.asarray(labels) > 0.5)
    return int(hits[0]) if len(hits) else None


def frame_windows(n_frames: int, window: FramesLike) -> np.ndarray:
    """``(n_frames, window)`` causal windows (first frame repeated), or ``(n_frames,)`` for one frame."""
    sampling = as_frame_sampling(window)
    if sampling.frames == 1:
        return np.arange(n_frames)
    return sampling.batch_indices(np.arange(n_frames))


def network_outputs(model: TorchRewardModel, traj: Any, *, batch_size: int = 512) -> np.ndarray:
    """Every output column of ``model.net`` for every frame of ``traj``: ``(T+1, C)``."""
    keys = list(model.spec.inputs)
    n = len(traj.labels)
    windows = frame_windows(n, model.spec.frame_sampling)
    model.net.eval()
    chunks = []
    for start in range(0, n, batch_size):
        rows = windows[start : start + batch_size]
        batch = gather_windows([traj], np.zeros(len(rows), np.int64), rows, keys)
        with torch.inference_mode():
            chunks.append(model.net(batch_to_tensors(batch, model.device)).float().cpu().numpy())
    return np.concatenate(chunks).astype(np.float64)


def predict_trajectory(model: RewardModel, traj: Any, *, batch_size: int = 512) -> np.ndarray:
    """``model.predict`` on the causal window ending at every frame of ``traj``: ``(T+1,)``."""
    keys = list(model.spec.inputs) if model.spec is not None else list(traj.obs)
    window = 1 if model.spec is None else model.spec.frame_sampling
    n = len(traj.labels)
    windows = frame_windows(n, window)
    out = [
        model.predict(gather_windows([traj], np.zeros(len(windows[s : s + batch_size]), np.int64), windows[s : s + batch_size], keys))
        for s in range(0, n, batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def episode_spearman(progress: np.ndarray, end: int | None = None) -> float:
    """Spearman(progress[0..end], time); ``end`` inclusive (default: the last frame)."""
    progress = np.asarray(progress, dtype=np.float64)
    stop = len(progress) if end is None else end + 1
    return spearman(progress[:stop], np.arange(stop, dtype=np.float64))


def progress_quality(predictions: Sequence[np.ndarray], trajectories: Sequence[Any]) -> dict[str, Any]:
    """Figures for per-frame progress ``predictions`` (one ``(T+1,)`` array per trajectory).

    >>> good = [np.array([0.1, 0.5, 0.9]), np.array([0.1, 0.2, 0.1])]
    >>> class T:
    ...     def __init__(self, labels): self.labels = np.array(labels, np.float32)
    >>> q = progress_quality(good, [T([0, 0, 1]), T([0, 0, 0])])
    >>> q["median_spearman"], q["final_progress_auc"]
    (1.0, 1.0)
    """
    spearmans, final_success, final_failed = [], [], []
    for pred, traj in zip(predictions, trajectories):
        end = first_success_frame(traj.labels)
        if end is None:
            final_failed.append(float(pred[-1]))
            continue
        final_success.append(float(pred[end]))
        if end >= 2:  # a rank correlation needs at least three frames
            spearmans.append(episode_spearman(pred, end))
    finite = [s for s in spearmans if np.isfinite(s)]
    scores = np.array(final_success + final_failed)
    labels = np.r_[np.ones(len(final_success)), np.zeros(len(final_failed))]
    return {
        "median_spearman": float(np.median(finite)) if finite else float("nan"),
        "mean_spearman": float(np.mean(finite)) if finite else float("nan"),
        "min_spearman": float(np.min(finite)) if finite else float("nan"),
        "final_progress_auc": roc_auc(scores, labels),
        "mean_final_progress_success": float(np.mean(final_success)) if final_success else float("nan"),
        "mean_final_progress_failed": float(np.mean(final_failed)) if final_failed else float("nan"),
        "episodes_success": len(final_success),
        "episodes_failed": len(final_failed),
        "episodes_constant_prediction": len(spearmans) - len(finite),
    }


def stage_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Fraction of frames whose predicted stage equals the target stage.

    >>> stage_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    0.75
    """
    predicted, target = np.asarray(predicted).reshape(-1), np.asarray(target).reshape(-1)
    if len(predicted) != len(target) or len(target) == 0:
        raise ValueError(f"stage_accuracy needs equal, non-empty arrays; got {len(predicted)} and {len(target)}")
    return float(np.mean(predicted == target))


def pair_metrics(return_a: np.ndarray, return_b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pair accuracy and pair-AUC of predicted segment returns against preference labels.

    ``labels`` is 1 when A is preferred, 0 when B is, 0.5 for a tie; ties are excluded from
    both figures (a tie has no right answer) and counted.
    """
    diff = np.asarray(return_a, dtype=np.float64) - np.asarray(return_b, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    decided = np.abs(labels - 0.5) > 1e-9
    d, y = diff[decided], labels[decided] > 0.5
    return {
        "accuracy": float(np.mean((d > 0) == y)) if len(d) else float("nan"),
        "auc": roc_auc(d, y.astype(np.float64)),
        "pairs": int(len(labels)),
        "ties": int((~decided).sum()),
    }
