"""Which past frames a multi-frame (video) reward model reads at frame ``t``.

A single-frame (image) model reads frame ``t`` alone. A video model reads ``frames`` frames,
all at or before ``t`` (causal, so the same checkpoint runs online), chosen by a strategy:

* ``"last"``: the last ``frames`` frames, ``t - frames + 1 .. t`` (motion over a short span);
* ``"strided"``: every ``stride``-th frame back from ``t`` (a longer span for the same cost);
* ``"uniform"``: ``frames`` frames spread evenly over the episode so far, ``0 .. t`` (the whole
  history, as video reward models that judge an episode's progress read it).

Indices before the episode's first frame are clipped to it (the first frame repeats), for every
strategy. Trainers (:func:`trainers.data.gather`) and the online wrappers
(:class:`reward_wrappers.cores.feed.ModelFeed`) both take their frames from :meth:`FrameSampling.indices`,
so a model sees online exactly what it was fitted on.

>>> FrameSampling(4).indices(1).tolist()
[0, 0, 0, 1]
>>> FrameSampling(3, "strided", stride=2).indices(5).tolist()
[1, 3, 5]
>>> FrameSampling(3, "uniform").indices(10).tolist()
[0, 5, 10]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

STRATEGIES = ("last", "strided", "uniform")


@dataclass(frozen=True)
class FrameSampling:
    """``frames`` frames per prediction, chosen by ``strategy`` (see the module docstring)."""

    frames: int = 1
    strategy: str = "last"
    stride: int = 1

    def __post_init__(self) -> None:
        if int(self.frames) < 1:
            raise ValueError(f"window must be >= 1 frame, got {self.frames}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"frame sampling strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if int(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.stride != 1 and self.strategy != "strided":
            raise ValueError(f"stride {self.stride} is read only by the 'strided' frame sampling, not {self.strategy!r}")

    def indices(self, t: int) -> np.ndarray:
        """The ``frames`` frame indices (oldest first, ``t`` last) read at frame ``t``."""
        return self.batch_indices(np.array([t]))[0]

    def batch_indices(self, t: np.ndarray) -> np.ndarray:
        """:meth:`indices` for each frame number of ``t`` ``(B,)``: ``(B, frames)`` int64."""
        t = np.asarray(t, dtype=np.int64)[:, None]
        i = np.arange(self.frames, dtype=np.int64)[None, :]
        if self.frames == 1:
            return t.copy()
        if self.strategy == "uniform":
            # round(t * i / (frames - 1)), half up, in integers: exact for any episode length
            return (2 * t * i + (self.frames - 1)) // (2 * (self.frames - 1))
        step = self.stride if self.strategy == "strided" else 1
        return np.maximum(t - step * (self.frames - 1 - i), 0)

    def spec_fields(self) -> dict[str, Any]:
        """The :class:`~reward_wrappers.models.base.ModelSpec` fields that record this sampling."""
        return {"window": self.frames, "sampling": self.strategy, "stride": self.stride}

    @property
    def history(self) -> Optional[int]:
        """How many recent frames an online feed must keep; None: the whole episode."""
        if self.strategy == "uniform" and self.frames > 1:
            return None
        return (self.stride if self.strategy == "strided" else 1) * (self.frames - 1) + 1


FramesLike = Union[int, FrameSampling]
"""A frame count (the ``"last"`` strategy) or a :class:`FrameSampling`."""


def as_frame_sampling(frames: FramesLike) -> FrameSampling:
    return frames if isinstance(frames, FrameSampling) else FrameSampling(int(frames))
