"""``ModelFeed``: what a reward core hands its model each vector step: per-env frame windows
(an episode's first frame repeated to fill them, as ``base.window_indices`` does in training)
and one batched, checked model call.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from reward_wrappers.base import BatchCheck, RewardModel, model_window
from reward_wrappers.ops import Array, Frames, Mask, Ops


class ModelFeed:
    """Frame windows per env plus one batched model call per step.

    With ``spec.window == 1`` the frames go straight to the model. Otherwise each env keeps its
    last ``window`` frames (``(B, window, *shape)``, oldest first); an episode's first frame
    fills the whole window, exactly as :func:`~reward_wrappers.base.window_indices` does.
    """

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
        self.window = model_window(model)
        self.min_confidence = min_confidence
        self.what = what
        self._history: Optional[dict[str, Array]] = None
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
    def _repeat(frame: Array, window: int) -> Array:
        if isinstance(frame, torch.Tensor):
            return frame.unsqueeze(1).expand(frame.shape[0], window, *frame.shape[1:]).clone()
        return np.repeat(np.asarray(frame)[:, None], window, axis=1)

    def _fill(self, history: dict[str, Array], frames: Frames, mask: Optional[Mask]) -> dict[str, Array]:
        if self.window == 1:
            return history
        out = {}
        for key, hist in history.items():
            if mask is None:
                out[key] = self._repeat(frames[key], self.window)
            else:
                hist = hist.clone() if isinstance(hist, torch.Tensor) else hist.copy()
                hist[mask] = self._repeat(frames[key][mask], self.window)
                out[key] = hist
        return out

    def start(self, frames: Frames, mask: Optional[Mask] = None) -> None:
        """Masked envs (all if ``mask`` is None) start an episode at ``frames``."""
        if self.window == 1:
            return
        if self._history is None or mask is None:
            self._history = {k: self._repeat(v, self.window) for k, v in frames.items()}
        else:
            self._history = self._fill(self._history, frames, mask)

    def _advance(self, frames: Frames, fresh: Optional[Mask]) -> dict[str, Array]:
        if self.window == 1:
            return dict(frames)
        if self._history is None:
            self.start(frames)
            return dict(self._history)  # type: ignore[arg-type]
        history = {}
        for key, hist in self._history.items():
            frame = frames[key]
            if isinstance(hist, torch.Tensor):
                history[key] = torch.cat([hist[:, 1:], frame.unsqueeze(1)], dim=1)
            else:
                history[key] = np.concatenate([hist[:, 1:], np.asarray(frame)[:, None]], axis=1)
        if self.ops.any(fresh):
            history = self._fill(history, frames, fresh)
        self._history = history
        return history

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
        windows = self._history if self.window > 1 else frames
        if mask is None:
            return self._forward(windows)  # type: ignore[arg-type]
        values = self.ops.zeros(self.num_envs)
        if self.ops.any(mask):
            values[mask] = self._forward({k: v[mask] for k, v in windows.items()})  # type: ignore[union-attr]
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
            restarted = self._fill(self._history, restart_frames, ended) if self.window > 1 else restart_frames  # type: ignore[arg-type]
            if self.window > 1:
                self._history = restarted
            if want_restart_values:
                restart_rows = {k: v[ended] for k, v in restarted.items()}  # type: ignore[index]
        if restart_rows is None:
            return self._forward(batch), None
        joined = {k: self.ops.cat([batch[k], restart_rows[k]]) for k in batch}
        out = self._forward(joined)
        restart_values = self.ops.zeros(self.num_envs)
        restart_values[ended] = out[self.num_envs :]
        return out[: self.num_envs], restart_values


__all__ = ["ModelFeed"]
