"""An env of our own whose success nobody reports: the labelling tests' stand-in for a real robot.

``HiddenCorridor-v0``: a point on a line, state ``[x, target, noise]`` (float64, like MuJoCo's),
action in [-1, 1] moves it by a tenth. It is a success when ``x`` is within 0.1 of ``target``, but
the env never says so: its infos carry no success key. Only a person looking at the state can tell;
:func:`is_success` is that person's judgement, and :func:`label_frames` /
:func:`first_success_frame` the same judgement as a labelling callable.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TOLERANCE = 0.1


class HiddenCorridor(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-2.0, 2.0, (3,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.array([self.x, self.target, self.np_random.normal(0, 0.01)], np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1.0, -0.5))
        self.target = float(self.np_random.uniform(0.3, 0.8))
        return self._obs(), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -2.0, 2.0))
        return self._obs(), -abs(self.x - self.target), False, False, {"position": self.x}


gym.register("HiddenCorridor-v0", entry_point=HiddenCorridor, max_episode_steps=30)


def is_success(state) -> bool:  # noqa: ANN001 - a sequence of the state's numbers
    return abs(float(state[0]) - float(state[1])) < TOLERANCE


def label_frames(frames: dict) -> list:
    """A labelling callable: the hidden truth of each frame."""
    return [is_success(s) for s in frames["state"]]


def scripted(env, seed):  # noqa: ANN001, ANN201 - collect's module:factory
    """Walks to the target on even seeds' episodes, stops short (half way) on others: both kinds."""
    rng = np.random.default_rng(seed)

    def policy(obs):  # noqa: ANN001, ANN202
        x, target = float(obs[0]), float(obs[1])
        goal = target if rng.random() < 0.6 else (x + target) / 2 - 0.3
        return np.array([np.clip((goal - x) * 5, -1, 1)], np.float32)

    return policy
