"""Small deterministic envs for users' own tests (and ``reward_wrappers.checker``).

:class:`CountingEnv` counts steps: its state is ``[t, x, length]`` (step count, running sum of
the actions, this episode's length drawn at reset), success is scripted (``t >= length``), and
episodes terminate on success or are truncated by ``max_steps``; so one short run covers
terminations, truncations and resets. ``image=True`` adds a small ``rgb`` key filled with ``t``.

>>> env = CountingEnv(max_len=3, max_steps=2)
>>> obs, info = env.reset(seed=0)
>>> obs.dtype, info["success"]
(dtype('float32'), False)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CountingEnv(gym.Env):
    """See the module docstring. ``terminate=False`` keeps episodes running past success."""

    metadata = {"render_modes": []}

    def __init__(self, max_len: int = 7, max_steps: int | None = None, terminate: bool = True,
                 image: bool = False) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        self.max_len, self.max_steps, self.terminate, self.image = int(max_len), max_steps, terminate, image
        state = spaces.Box(-1e3, 1e3, (3,), np.float32)
        self.observation_space = (
            spaces.Dict(state=state, rgb=spaces.Box(0, 255, (4, 4, 3), np.uint8)) if image else state
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t, self.x, self.length = 0, 0.0, 0

    def _obs(self) -> Any:
        state = np.array([self.t, self.x, self.length], dtype=np.float32)
        if not self.image:
            return state
        return {"state": state, "rgb": np.full((4, 4, 3), self.t % 256, dtype=np.uint8)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.x = float(np.float32(self.np_random.uniform(-1.0, 1.0)))
        self.length = int(self.np_random.integers(2, self.max_len + 1))
        return self._obs(), {"success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        self.x = float(np.float32(self.x + float(np.asarray(action).reshape(-1)[0])))
        success = self.t >= self.length
        truncated = self.max_steps is not None and self.t >= self.max_steps
        reward = float(np.float32(0.1 * self.t + self.x))  # float32-exact, as SB3's buffers store it
        return self._obs(), reward, bool(self.terminate and success), bool(truncated), {"success": bool(success)}


__all__ = ["CountingEnv"]
