"""Where a process reward's hop labels come from: pluggable label providers.

A provider reads one recorded episode and returns its per-frame progress ``p`` (``(T,)``, about
0 at the start and 1 at the goal), or ``None`` when it cannot label that episode; the hop label of
a pair of frames ``(before, after)`` is ``clip(p[after] - p[before], -1, 1)``, so pairs in reverse
order teach regress. Built in:

* ``oracle``: distance to the goal features, ``p[t] = 1 - |x_t - g| / |x_0 - g|``, with ``g`` the
  episode's last frame, for successful episodes (a bootstrap: it needs the goal in feature space);
* ``success``: the recorded success flags, ``p[t] = min(t / t_s, 1)`` with ``t_s`` the first
  successful frame (ReWiND's labels), for successful episodes;
* ``fn:MODULE:FUNCTION``: the user's ``f(episode) -> (T,) progress or None``.

>>> import numpy as np
>>> ep = Episode(features=np.array([[4.0], [3.0], [0.0]]), success=np.array([False, False, True]))
>>> OracleDistanceLabels()(ep).tolist(), TaskSuccessLabels()(ep).tolist()
([0.0, 0.25, 1.0], [0.0, 0.5, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from reward_wrappers.models.base import import_function


@dataclass
class Episode:
    """One recorded episode as a provider sees it: normalised ``features`` ``(T, F)``, per-frame
    ``success`` flags ``(T,)``, and the trajectory itself (its ``obs``, ``meta``...) when loaded from buffers."""

    features: np.ndarray
    success: np.ndarray
    trajectory: Any = None


LabelProvider = Callable[[Episode], Optional[np.ndarray]]


def _first_success(success: np.ndarray) -> Optional[int]:
    hits = np.flatnonzero(np.asarray(success, dtype=bool))
    return int(hits[0]) if len(hits) else None


class OracleDistanceLabels:
    """Progress = how much of the first distance to the goal (the episode's last frame) is covered."""

    name = "oracle"

    def __call__(self, episode: Episode) -> Optional[np.ndarray]:
        if _first_success(episode.success) is None:
            return None  # a failed episode's last frame is not a goal
        distance = np.linalg.norm(episode.features - episode.features[-1], axis=1)
        return 1.0 - distance / max(float(distance[0]), 1e-8)


class TaskSuccessLabels:
    """Progress = time over the time of first success (1 from then on)."""

    name = "success"

    def __call__(self, episode: Episode) -> Optional[np.ndarray]:
        first = _first_success(episode.success)
        if first is None or first < 1:
            return None
        return np.minimum(np.arange(len(episode.success), dtype=np.float64) / first, 1.0)


class CallableLabels:
    """The user's ``function(episode) -> (T,) progress or None``."""

    def __init__(self, function: LabelProvider, name: str = "callable") -> None:
        self.function, self.name = function, name

    def __call__(self, episode: Episode) -> Optional[np.ndarray]:
        out = self.function(episode)
        if out is None:
            return None
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(episode.features),) or not np.isfinite(out).all():
            raise ValueError(f"label provider {self.name} returned shape {out.shape} (or non-finite values) for an "
                             f"episode of {len(episode.features)} frames; expected ({len(episode.features)},) finite progress")
        return out


def label_provider(spec: str | LabelProvider) -> LabelProvider:
    """``"oracle"``, ``"success"``, ``"fn:MODULE:FUNCTION"`` or a callable."""
    if callable(spec):
        return CallableLabels(spec, getattr(spec, "__name__", "callable"))
    if spec == "oracle":
        return OracleDistanceLabels()
    if spec == "success":
        return TaskSuccessLabels()
    if spec.startswith("fn:") and spec.count(":") == 2:
        return CallableLabels(import_function(spec[3:], f"--labels {spec}"), spec)
    raise ValueError(f"labels must be 'oracle', 'success' or 'fn:MODULE:FUNCTION', got {spec!r}")


def hop_labels(progress: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Hop label of frame pairs: ``clip(p[after] - p[before], -1, 1)``."""
    return np.clip(progress[after] - progress[before], -1.0, 1.0)


__all__ = ["CallableLabels", "Episode", "LabelProvider", "OracleDistanceLabels", "TaskSuccessLabels", "hop_labels",
           "label_provider"]
