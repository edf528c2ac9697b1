"""A scripted reacher for gymnasium-robotics' Fetch tasks, for ``collect --policy benchmarks.fetch_expert:reach``.

The untuned-env check (``benchmarks/untuned_fetch.sh``) records its demonstrations with it, as a user
of a suite this project has no expert for would: ``--policy module:factory``. ``envs.make`` observes a
Fetch env's ``Dict`` as one vector, its keys in sorted order: ``achieved_goal`` (3), ``desired_goal``
(3), ``observation`` (10 for FetchReach). The gripper moves straight to the goal, gripper fingers held.

>>> import numpy as np
>>> act = reach(None, 0)
>>> act(np.r_[[1.0, 1.0, 1.0], [1.5, 0.9, 1.0], np.zeros(10)].astype(np.float32))
array([ 1., -1.,  0.,  0.], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: Gain from the gripper's distance to its goal (metres) to the action (about 0.05 m per unit).
_GAIN = 10.0


def reach(env: Any, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """``policy(obs) -> action`` towards ``desired_goal`` (FetchReach's goal is the gripper's)."""

    def act(obs: np.ndarray) -> np.ndarray:
        achieved, desired = obs[0:3], obs[3:6]
        move = np.clip(_GAIN * (desired - achieved), -1.0, 1.0)
        return np.r_[move, 0.0].astype(np.float32)

    return act
