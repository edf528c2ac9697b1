"""In-training refits of a success classifier under a label budget (HIL-SERL's correction step).

Every ``every`` env steps (checked at the end of a rollout, so one rollout's rewards always come
from one model), :class:`RefitCallback`:

1. scores the agent's recent frames (kept by :class:`VecTransitionFrames`, the reward model's own
   inputs) with the current classifier;
2. asks the labeller about those the classifier calls successes (the false positives an agent
   exploits) plus a random sample of the rest; each answer costs one label of the budget, and
   nothing is asked once it is spent. The env's success flag stands in for the human here;
3. fine-tunes the classifier on its original buffers plus every frame labelled so far, the
   labelled frames taking half of each class's share of a batch (its
   threshold raised where needed to reach ``precision`` on held-out frames, labelled ones among
   them: false positives are what the agent exploits), saves it
   as ``refits/refit_<k>.pt`` (with its label count) and swaps it into the run's reward wrappers
   (a :class:`~reward_wrappers.base.SwappableModel`, in this process only);
4. recomputes every reward stored in an off-policy replay buffer (:mod:`agents.replay`).
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from collectors import load_trajectories
from reward_wrappers import load_reward_model
from reward_wrappers.base import SwappableModel
from reward_wrappers.core import output_kind, success_score
from reward_wrappers.ops import NumpyOps
from reward_wrappers.transitions import SuccessLabeller, VecTransitionFrames, predict_in_chunks
from trainers.classifier import fit_classifier

#: Share of a refit's labels that may go to frames the classifier calls successes; the rest (at
#: least a quarter) is a uniform sample of the others, which also finds missed successes.
CALLED_SHARE = 0.75
#: Labelled frames per pseudo-trajectory, so the refit's split by trajectory can hold some out.
CHUNK = 32


@dataclass
class LabelledFrames:
    """Frames labelled during training, shaped like a recorded trajectory for the trainers."""

    obs: dict[str, np.ndarray]
    labels: np.ndarray
    id: str

    @property
    def success(self) -> bool:
        return bool(np.max(self.labels) > 0.5)

    @property
    def path(self) -> str:
        return f"<labelled during training: {self.id}>"


def choose_frames(called: np.ndarray, allowance: int, rng: np.random.Generator) -> np.ndarray:
    """Indices to label: frames called successful first (up to ``CALLED_SHARE`` of ``allowance``,
    sampled uniformly when there are more), the rest of the allowance from the other frames.

    >>> choose_frames(np.array([False, True, False, False]), 2, np.random.default_rng(0)).tolist()
    [1, 3]
    """
    positives, others = np.flatnonzero(called), np.flatnonzero(~called)
    n_called = min(len(positives), max(1, math.ceil(CALLED_SHARE * allowance)) if allowance else 0)
    chosen_called = rng.choice(positives, n_called, replace=False) if n_called < len(positives) else positives
    n_other = min(len(others), allowance - len(chosen_called))
    chosen_other = rng.choice(others, n_other, replace=False) if n_other > 0 else np.zeros(0, np.int64)
    return np.sort(np.concatenate([chosen_called, chosen_other]).astype(np.int64))


class RefitCallback(BaseCallback):
    """See the module docstring. ``base_data`` is the classifier's original buffer directory."""

    def __init__(self, *, model: SwappableModel, frames: VecTransitionFrames, labeller: SuccessLabeller,
                 base_data: str, every: int, labels_per_refit: int, run_dir: str | pathlib.Path, epochs: int = 3,
                 lr: float = 1e-4, seed: int = 0, monitor: Any = None, precision: float | None = 0.95,
                 verbose: int = 1) -> None:
        super().__init__(verbose)
        self.live = model
        self.frames = frames
        self.labeller = labeller
        self.base_data = base_data
        self.every = int(every)
        self.labels_per_refit = int(labels_per_refit)
        self.run_dir = pathlib.Path(run_dir)
        self.epochs, self.lr, self.seed = int(epochs), float(lr), int(seed)
        self.monitor = monitor
        self.precision = precision
        self.rng = np.random.default_rng(seed)
        self.labelled: list[LabelledFrames] = []
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._last = 0
        self._base: Optional[list[Any]] = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # No refit once the step budget is reached: nothing would train on it.
        finished = self.num_timesteps >= getattr(self.model, "_total_timesteps", float("inf"))
        if self.num_timesteps - self._last >= self.every and self.labeller.remaining > 0 and not finished:
            self._last = self.num_timesteps
            self.refit()

    def _scores(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """What the wrappers compare with the threshold: the probability, for a classifier."""
        return success_score(predict_in_chunks(self.live.predict, frames), output_kind(self.live), NumpyOps())

    def refit(self) -> Optional[dict[str, Any]]:
        """Label, fine-tune, swap, relabel; return what happened (None when nothing was labelled)."""
        start = time.perf_counter()
        frames = self.frames.recent_frames()
        threshold = float(self.live.spec.threshold) if self.live.spec is not None else 0.5
        called = self._scores(frames) > threshold
        chosen = choose_frames(called, min(self.labels_per_refit, self.labeller.remaining), self.rng)
        labels = self.labeller.label(chosen)
        chosen = chosen[: len(labels)]
        if len(chosen) == 0:
            return None
        k = len(self.records) + 1
        for c, start_row in enumerate(range(0, len(chosen), CHUNK)):
            rows = chosen[start_row : start_row + CHUNK]
            self.labelled.append(LabelledFrames({key: v[rows].copy() for key, v in frames.items()},
                                                labels[start_row : start_row + CHUNK].astype(np.float32), f"refit{k}_{c}"))
        if self._base is None:
            self._base = list(load_trajectories(self.base_data))
        was_called = called[chosen]
        record = {
            "refit": k,
            "steps": int(self.num_timesteps),
            "frames_scored": int(len(called)),
            "frames_called_success": int(called.sum()),
            "labelled": int(len(chosen)),
            "labelled_called_success": int(was_called.sum()),
            "false_positives_found": int((was_called & ~labels).sum()),
            "missed_successes_found": int((~was_called & labels).sum()),
            "labels_used": self.labeller.used,
            "labels_remaining": self.labeller.remaining,
        }
        out = self.run_dir / "refits" / f"refit_{k:03d}.pt"
        current = getattr(self.live, "current", self.live)
        path = fit_classifier(self._base, out, focus=self.labelled, epochs=self.epochs, lr=self.lr, seed=self.seed + k,
                              progress=False, init=current, metadata={"refit": record},
                              threshold_precision=self.precision)
        new = load_reward_model(path)
        if self.monitor is not None:
            self.monitor.record_refit(record)
        self.live.swap(new)
        record["threshold"] = float(new.spec.threshold)
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None and hasattr(buffer, "relabel"):
            record["relabelled_transitions"] = buffer.relabel()
        record["seconds"] = time.perf_counter() - start
        self.seconds += record["seconds"]
        self.records.append(record)
        for key in ("labels_used", "false_positives_found", "missed_successes_found", "frames_called_success"):
            self.logger.record(f"refit/{key}", record[key])
        if self.verbose:
            print(f"  refit {k} at step {record['steps']}: labelled {record['labelled']} frames "
                  f"({record['labelled_called_success']} called successes, {record['false_positives_found']} of them "
                  f"false); labels used {record['labels_used']}/{self.labeller.budget}; {record['seconds']:.0f}s",
                  file=sys.stderr, flush=True)
        return record


def labels_per_refit(budget: int, steps: int, every: int) -> int:
    """An even share of the budget for each refit the run will make (none at the very end).

    >>> labels_per_refit(1000, 30_000, 5_000)
    200
    """
    return max(1, math.ceil(budget / max(1, (steps - 1) // every)))

