"""The single-env adapter every per-env reward wrapper is built on.

It turns one env's ``reset``/``step`` into a batch of one for a core of
:mod:`reward_wrappers.cores.rewards` and writes the core's per-env values back into ``info`` as Python
scalars (SB3's ``check_env`` wants a Python ``float`` reward and ``bool`` flags).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType

from reward_wrappers.cores.rewards import (ENV_REWARD, INFO_PREFIX, FrameReader, info_value, model_info_keys, model_keys,
                                  validated_model)
from reward_wrappers.twins import MISSING, Twin


def mirror_success(info: dict[str, Any]) -> None:
    """Copy the env's ``success`` flag into ``is_success`` (the key SB3 logs) unless already set."""
    if "success" in info and "is_success" not in info:
        info["is_success"] = bool(info["success"])


def scalar(value: Any) -> float | bool:
    """Element 0 of a (1,) array as a Python scalar."""
    item = value[0]
    return item.item() if hasattr(item, "item") else item


class CoreWrapper(Twin, gym.Wrapper[ObsType, ActType, ObsType, ActType]):
    """A gymnasium wrapper whose reward comes from a :mod:`reward_wrappers.cores.rewards` core (B = 1).

    ``info["env_reward"]`` is set only if absent, so the innermost reward wrapper's value (the
    env's own reward) survives any stack of reward wrappers.
    """

    def __init__(self, env: gym.Env[ObsType, ActType], model: Any = MISSING, **options: Any) -> None:
        model, options = self.model_and_options(model, options)
        if isinstance(self, gym.utils.RecordConstructorArgs):  # so env.spec can rebuild the stack (check_env does)
            gym.utils.RecordConstructorArgs.__init__(self, **{self.model_arg: model}, **options)
        core = self.core_class(validated_model(model, env.observation_space), **options)
        gym.Wrapper.__init__(self, env)
        self.core = core
        self.expose(core)
        self._reader = FrameReader(env.observation_space, model_keys(core.model, env.observation_space))
        self._info_keys = model_info_keys(core.model)

    def _frames(self, obs: ObsType, info: dict[str, Any]) -> dict[str, np.ndarray]:
        frames = self._reader.single(obs)
        for key in self._info_keys:
            frames[INFO_PREFIX + key] = np.asarray(info_value(info, key, "env's"))[None]
        return frames

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        for key, value in self.core.begin(self._frames(obs, info)).items():
            info[key] = scalar(value)
        mirror_success(info)
        return obs, info

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        out = self.core.step(
            self._frames(obs, info),
            np.array([float(env_reward)], dtype=np.float64),
            np.array([bool(terminated)]),
            last=np.array([bool(terminated or truncated)]),
        )
        info = dict(info)
        for key, value in out.info.items():
            if key == ENV_REWARD:
                info.setdefault(ENV_REWARD, float(env_reward))
            else:
                info[key] = scalar(value)
        if out.terminate is not None and bool(out.terminate[0]):
            terminated = True
        mirror_success(info)
        return obs, float(out.reward[0]), bool(terminated), bool(truncated), info
