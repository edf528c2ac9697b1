"""Tiny in-memory trajectories with the attributes trainers read (no disk, no env)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FakeTrajectory:
    obs: dict[str, np.ndarray]
    labels: np.ndarray
    rewards: np.ndarray
    path: str
    id: str
    info: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.labels.max() > 0.5)

    def __len__(self) -> int:
        return len(self.rewards)


def separable_trajectories(n: int = 24, length: int = 12, image: int = 16, seed: int = 0) -> list[FakeTrajectory]:
    """Half the episodes succeed from a random step on; success is visible in state and image.

    ``state[0]`` is +1 on success frames and -1 otherwise (plus noise); the image has a bright
    square in its top-left corner on success frames only.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = np.zeros(length + 1, np.float32)
        if i % 2 == 0:
            labels[rng.integers(length // 2, length + 1):] = 1.0
        state = rng.normal(0, 0.3, (length + 1, 4)).astype(np.float32)
        state[:, 0] += np.where(labels > 0.5, 1.0, -1.0)
        rgb = rng.integers(0, 60, (length + 1, image, image, 3)).astype(np.uint8)
        rgb[labels > 0.5, : image // 2, : image // 2] = 255
        out.append(FakeTrajectory({"state": state, "rgb": rgb}, labels, rng.normal(size=length).astype(np.float32), f"fake/{i:03d}", f"{i:03d}"))
    return out
