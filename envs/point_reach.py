"""``PointReach-v0``: drive a 2D point mass into a goal disk.

State observation (float32, 6): ``[x, y, vx, vy, goal_x, goal_y]``. Success when the agent's
centre is inside the goal disk (radius :attr:`PointReachEnv.GOAL_RADIUS`). The dense reward is
the negative distance to the goal divided by the arena diagonal (in ``[-1, 0]``). Start and goal
are drawn uniformly per reset at least :attr:`PointReachEnv.MIN_START_DISTANCE` apart, so random
actions almost never succeed within the 50-step limit. In the image the goal is a green disk and
the agent a red dot.

>>> import gymnasium as gym
>>> import envs  # registers PointReach-v0
>>> env = gym.make("PointReach-v0")
>>> obs, info = env.reset(seed=0)
>>> obs.shape, info["success"], env.spec.max_episode_steps
((6,), False, 50)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import numpy as np

from envs.point_base import ARENA_DIAGONAL, Canvas, PointMassEnv

GOAL_COLOUR = (40, 200, 70)


class PointReachEnv(PointMassEnv):
    """A point mass must reach a goal disk. See the module docstring for the details.

    >>> env = PointReachEnv(reward_mode="sparse")
    >>> obs, info = env.reset(seed=1)
    >>> _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    >>> reward, terminated, info["success"]
    (0.0, False, False)
    """

    GOAL_RADIUS: ClassVar[float] = 0.12
    MIN_START_DISTANCE: ClassVar[float] = 1.0
    TASK_STATE_DIM: ClassVar[int] = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gx = self.gy = 0.0

    def _reset_task(self, rng: np.random.Generator) -> None:
        self.gx, self.gy = self._sample_far(rng, [], 0.0, 0.85)
        self.px, self.py = self._sample_far(rng, [(self.gx, self.gy)], self.MIN_START_DISTANCE, 0.9)

    def _task_state(self) -> list[float]:
        return [self.gx, self.gy]

    def _update_task(self) -> tuple[bool, float, dict[str, Any]]:
        dist = math.hypot(self.px - self.gx, self.py - self.gy)
        return dist <= self.GOAL_RADIUS, -dist / ARENA_DIAGONAL, {}

    def _draw_task(self, canvas: Canvas, img: np.ndarray) -> None:
        canvas.disk(img, self.gx, self.gy, self.GOAL_RADIUS, GOAL_COLOUR)


def goal_state(frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """The state a PointReach episode ends in, from its states: at rest on the goal.

    A goal source for a process reward (``--process-goal fn:envs.point_reach:goal_state``).

    >>> goal_state({"state": np.array([[0.1, 0.2, 0.3, 0.4, -0.5, 0.6]])}).tolist()
    [[-0.5, 0.6, 0.0, 0.0, -0.5, 0.6]]
    """
    state = np.asarray(frames["state"], dtype=np.float64)
    goal = state.copy()
    goal[:, 0:2], goal[:, 2:4] = state[:, 4:6], 0.0
    return goal


def distance_potential(frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """The env's own progress as a PBRS potential: ``1 + `` the dense reward, i.e. one minus the
    distance to the goal over the arena diagonal, from the state observation ``(B, 6)``.

    Privileged, hand-written shaping: the ceiling a learned potential can reach on this env
    (``train-agent --pbrs fn:envs.point_reach:distance_potential``); numpy in, numpy out.

    >>> distance_potential({"state": np.array([[0.3, -0.2, 0.0, 0.0, 0.3, -0.2]])}).tolist()
    [1.0]
    """
    state = np.asarray(frames["state"], dtype=np.float64)
    return 1.0 - np.linalg.norm(state[:, 0:2] - state[:, 4:6], axis=1) / ARENA_DIAGONAL
