"""``PointKeyDoor-v0``: a two-stage point-mass task. Reach the key, then the door.

State observation (float32, 9): ``[x, y, vx, vy, key_x, key_y, door_x, door_y, has_key]``.
Touching the key (centre within :attr:`PointKeyDoorEnv.KEY_RADIUS`) picks it up for the rest of
the episode; success is being inside the door disk while holding the key. Every ``info`` carries
the stage flags ``has_key`` and ``success`` (``success`` implies ``has_key``), so stage-aware
reward models can learn stages without hand annotation.

The dense reward is minus the remaining path length (agent -> key -> door, or agent -> door once
the key is held) over twice the arena diagonal, in ``[-1, 0]``. In the image the key is a yellow
disk (drawn only until it is picked up), the door a blue disk that turns cyan once the key is
held, and the agent a red dot. The registered time limit is 100 steps.

>>> import gymnasium as gym
>>> import envs  # registers PointKeyDoor-v0
>>> env = gym.make("PointKeyDoor-v0")
>>> obs, info = env.reset(seed=0)
>>> obs.shape, info["has_key"], info["success"], env.spec.max_episode_steps
((9,), False, False, 100)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import numpy as np

from envs.point_base import ARENA_DIAGONAL, Canvas, PointMassEnv

KEY_COLOUR = (240, 210, 40)
DOOR_LOCKED_COLOUR = (50, 90, 230)
DOOR_OPEN_COLOUR = (60, 220, 220)


class PointKeyDoorEnv(PointMassEnv):
    """Pick up the key, then reach the door. See the module docstring for the details.

    >>> env = PointKeyDoorEnv(obs_mode="rgb")
    >>> obs, info = env.reset(seed=3)
    >>> obs.shape, obs.dtype.name, info["has_key"]
    ((64, 64, 3), 'uint8', False)
    """

    KEY_RADIUS: ClassVar[float] = 0.1
    DOOR_RADIUS: ClassVar[float] = 0.12
    TASK_STATE_DIM: ClassVar[int] = 5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kx = self.ky = self.dx = self.dy = 0.0
        self.has_key = False

    def _reset_task(self, rng: np.random.Generator) -> None:
        self.has_key = False
        self.kx, self.ky = self._sample_far(rng, [], 0.0, 0.85)
        self.dx, self.dy = self._sample_far(rng, [(self.kx, self.ky)], 0.8, 0.85)
        self.px, self.py = self._sample_far(rng, [(self.kx, self.ky), (self.dx, self.dy)], 0.6, 0.9)

    def _task_state(self) -> list[float]:
        return [self.kx, self.ky, self.dx, self.dy, 1.0 if self.has_key else 0.0]

    def _update_task(self) -> tuple[bool, float, dict[str, Any]]:
        if not self.has_key and math.hypot(self.px - self.kx, self.py - self.ky) <= self.KEY_RADIUS:
            self.has_key = True
        to_door = math.hypot(self.px - self.dx, self.py - self.dy)
        if self.has_key:
            remaining = to_door
            success = to_door <= self.DOOR_RADIUS
        else:
            remaining = math.hypot(self.px - self.kx, self.py - self.ky) + math.hypot(
                self.kx - self.dx, self.ky - self.dy
            )
            success = False
        return success, -remaining / (2.0 * ARENA_DIAGONAL), {"has_key": self.has_key}

    def _draw_task(self, canvas: Canvas, img: np.ndarray) -> None:
        door = DOOR_OPEN_COLOUR if self.has_key else DOOR_LOCKED_COLOUR
        canvas.disk(img, self.dx, self.dy, self.DOOR_RADIUS, door)
        if not self.has_key:
            canvas.disk(img, self.kx, self.ky, self.KEY_RADIUS, KEY_COLOUR)


def goal_state(frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """The state a PointKeyDoor episode ends in, from its states: at rest in the door, key held.

    A goal source for a process reward (``--process-goal fn:envs.point_key_door:goal_state``).

    >>> goal_state({"state": np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -0.7, 0.8, 0.0]])}).tolist()
    [[-0.7, 0.8, 0.0, 0.0, 0.5, 0.6, -0.7, 0.8, 1.0]]
    """
    state = np.asarray(frames["state"], dtype=np.float64)
    goal = state.copy()
    goal[:, 0:2], goal[:, 2:4], goal[:, 8] = state[:, 6:8], 0.0, 1.0
    return goal


def remaining_path_potential(frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """The env's own progress as a PBRS potential: ``1 + `` the dense reward, i.e. one minus the
    remaining path (agent -> key -> door, or agent -> door with the key) over twice the arena
    diagonal, from the state observation ``(B, 9)``.

    Privileged, hand-written shaping: the ceiling a learned potential can reach on this env
    (``train-agent --pbrs fn:envs.point_key_door:remaining_path_potential``); numpy in, numpy out.

    >>> at_door_with_key = np.array([[0.5, 0.5, 0.0, 0.0, -0.5, -0.5, 0.5, 0.5, 1.0]])
    >>> remaining_path_potential({"state": at_door_with_key}).tolist()
    [1.0]
    """
    state = np.asarray(frames["state"], dtype=np.float64)
    agent, key, door, has_key = state[:, 0:2], state[:, 4:6], state[:, 6:8], state[:, 8] > 0.5
    to_door = np.linalg.norm(agent - door, axis=1)
    via_key = np.linalg.norm(agent - key, axis=1) + np.linalg.norm(key - door, axis=1)
    return 1.0 - np.where(has_key, to_door, via_key) / (2.0 * ARENA_DIAGONAL)
