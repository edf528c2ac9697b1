"""``ModelFeed``: what a reward core hands its model each vector step: per-env frame windows
(chosen by the model's frame sampling, an episode's first frame repeated where the window
reaches before it, as ``base.window_indices`` does in training) and one batched, checked model call.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from reward_wrappers.models.base import BatchCheck, RewardModel, model_frames
from reward_wrappers.cores.ops import Array, Frames, Mask, Ops


class ModelFeed:
    """Frame windows per env plus one batched model call per step.

    With ``spec.window == 1`` the frames go straight to the model. Otherwise each env keeps the
    frames of its episode that the model's :class:`~reward_wrappers.models.frames.FrameSampling` can
    still ask for (a ring of ``history`` frames; the whole episode for ``"uniform"``) and the
    model reads ``(B, window, *shape)``, oldest first, exactly the frames
    :func:`~reward_wrappers.models.base.window_indices` picks in training.
    """

    #: Starting capacity (frames per env) of a whole-episode history; it doubles as needed.
    GROWABLE_CAPACITY = 64

    def __init__(
        self,
        model: RewardModel,
        num_envs: int,
        ops: Ops,
        *,
        min_confidence: Optional[float] = None,
        what: str = "reward model",
    ) -> None:
        self.model = model
        self.num_envs = int(num_envs)
        self.ops = ops
        self.sampling = model_frames(model)
        self.window = self.sampling.frames
        self.min_confidence = min_confidence
        self.what = what
        self._history: Optional[dict[str, Array]] = None  # key -> (B, capacity, *shape)
        self._count = np.zeros(self.num_envs, dtype=np.int64)  # frames of the current episode seen
        # Keys, per-frame shapes and dtypes against the spec, checked fully once per layout.
        self._check = BatchCheck(getattr(model, "spec", None))
        # A spec, when there is one, is the authority: every TorchRewardModel has the methods,
        # but only networks with a confidence head can answer them.
        has_confidence = (
            model.spec.has_confidence
            if getattr(model, "spec", None) is not None
            else hasattr(model, "predict_confidence") or hasattr(model, "predict_with_confidence")
        )
        if min_confidence is not None and not has_confidence:
            raise ValueError(
                "min_confidence needs a model with predict_confidence(batch) (spec.has_confidence); "
                f"{model!r} has none"
            )

    # -- windows ------------------------------------------------------------------------------
    @staticmethod
    def _rows(mask: Optional[Mask], n: int) -> np.ndarray:
        """Env indices selected by ``mask`` (all when None), on the host."""
        if mask is None:
            return np.arange(n)
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        return np.flatnonzero(np.asarray(mask))

    @staticmethod
    def _index(like: Array, idx: np.ndarray) -> Any:
        return torch.as_tensor(idx, device=like.device) if isinstance(like, torch.Tensor) else idx

    def _allocate(self, frames: Frames, capacity: int) -> dict[str, Array]:
        out = {}
        for key, frame in frames.items():
            shape = (self.num_envs, capacity, *frame.shape[1:])
            out[key] = (torch.zeros(shape, dtype=frame.dtype, device=frame.device) if isinstance(frame, torch.Tensor)
                        else np.zeros(shape, dtype=np.asarray(frame).dtype))
        return out

    def _store(self, frames: Frames, rows: np.ndarray) -> None:
        """Append ``frames[rows]`` to those envs' episodes."""
        if self._history is None:
            self._history = self._allocate(frames, self.sampling.history or self.GROWABLE_CAPACITY)
        capacity = next(iter(self._history.values())).shape[1]
        if self.sampling.history is None and len(rows) and int(self._count[rows].max()) >= capacity:
            grown = self._allocate(frames, 2 * capacity)
            for key, hist in self._history.items():
                grown[key][:, :capacity] = hist
            self._history, capacity = grown, 2 * capacity
        slots = self._count[rows] % capacity  # a ring when bounded; never wraps when growable
        for key, hist in self._history.items():
            frame = frames[key]
            picked = frame[self._index(frame, rows)] if len(rows) != self.num_envs else frame
            hist[self._index(hist, rows), self._index(hist, slots)] = picked
        self._count[rows] += 1

    def _windows(self, rows: np.ndarray) -> dict[str, Array]:
        """The model's frames for envs ``rows``: ``(len(rows), window, *shape)`` per key."""
        assert self._history is not None
        capacity = next(iter(self._history.values())).shape[1]
        slots = self.sampling.batch_indices(self._count[rows] - 1) % capacity
        return {key: hist[self._index(hist, rows[:, None]), self._index(hist, slots)] for key, hist in self._history.items()}

    def start(self, frames: Frames, mask: Optional[Mask] = None) -> None:
        """Masked envs (all if ``mask`` is None) start an episode at ``frames``."""
        if self.window == 1:
            return
        rows = self._rows(mask, self.num_envs)
        self._count[rows] = 0
        self._store(frames, rows)

    def _advance(self, frames: Frames, fresh: Optional[Mask]) -> dict[str, Array]:
        if self.window == 1:
            return dict(frames)
        if self._history is None:
            self.start(frames)
        else:
            if fresh is not None and self.ops.any(fresh):
                self._count[self._rows(fresh, self.num_envs)] = 0
            self._store(frames, np.arange(self.num_envs))
        return self._windows(np.arange(self.num_envs))

    # -- forward ------------------------------------------------------------------------------
    def _forward(self, batch: Frames) -> Array:
        self._check(batch)
        n = next(iter(batch.values())).shape[0]
        if self.min_confidence is not None and hasattr(self.model, "predict_with_confidence") and self.ops.name == "numpy":
            values, confidence = self.model.predict_with_confidence(batch)  # type: ignore[attr-defined]
            values, confidence = self.ops.floats(values), self.ops.floats(confidence)
        else:
            values = self.ops.predict(self.model, batch)
            confidence = self.ops.confidence(self.model, batch) if self.min_confidence is not None else None
        if values.shape[0] != n:
            raise ValueError(f"{self.what} returned {values.shape[0]} values for a batch of {n}; predict must return (B,)")
        values = self.ops.check_finite(values, self.what)
        if confidence is not None:
            # A potential the model is unsure about is 0: still a function of the state, so
            # shaping stays potential-based (policy-invariant).
            values = self.ops.where(confidence >= self.min_confidence, values, 0.0)
        return values

    def values(self, batch: Frames) -> Array:
        """Model values of a ready batch (windows already built), with the per-step checks and the
        confidence rule: for recomputing stored transitions (:mod:`reward_wrappers.transitions`)."""
        return self._forward(batch)

    def begin(self, frames: Frames, mask: Optional[Mask] = None, *, want_values: bool = True) -> Optional[Array]:
        """Start episodes at ``frames`` for masked envs; return the model values there (0 elsewhere)."""
        self.start(frames, mask)
        if not want_values:
            return None
        if mask is None:
            return self._forward(self._windows(np.arange(self.num_envs)) if self.window > 1 else frames)
        values = self.ops.zeros(self.num_envs)
        if self.ops.any(mask):
            rows = self._windows(self._rows(mask, self.num_envs)) if self.window > 1 else {k: v[mask] for k, v in frames.items()}
            values[mask] = self._forward(rows)
        return values

    def evaluate(
        self,
        frames: Frames,
        *,
        fresh: Optional[Mask] = None,
        ended: Optional[Mask] = None,
        restart_frames: Optional[Frames] = None,
        want_restart_values: bool = False,
    ) -> tuple[Array, Optional[Array]]:
        """Model values at ``frames`` (B,) and, for ``ended`` envs, at their restart frames.

        ``fresh`` envs' windows restart at ``frames``; ``ended`` envs' windows restart at
        ``restart_frames`` after their value at ``frames`` is taken. Both sets of rows go through
        one model call.
        """
        batch = self._advance(frames, fresh)
        restarting = restart_frames is not None and self.ops.any(ended)
        restart_rows: Optional[dict[str, Array]] = None
        if restarting:
            if self.window == 1:
                restart_rows = {k: v[ended] for k, v in restart_frames.items()} if want_restart_values else None  # type: ignore[union-attr]
            else:
                self.start(restart_frames, ended)  # type: ignore[arg-type]
                restart_rows = self._windows(self._rows(ended, self.num_envs)) if want_restart_values else None
        if restart_rows is None:
            return self._forward(batch), None
        joined = {k: self.ops.cat([batch[k], restart_rows[k]]) for k in batch}
        out = self._forward(joined)
        restart_values = self.ops.zeros(self.num_envs)
        restart_values[ended] = out[self.num_envs :]
        return out[: self.num_envs], restart_values


__all__ = ["ModelFeed"]
