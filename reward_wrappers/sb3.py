"""SB3 ``VecEnvWrapper`` twins of the reward wrappers: one batched model call per vector step.

The model lives in the main process only (never pickled into ``SubprocVecEnv`` workers) and sees
all envs' frames at once. SB3 VecEnv conventions handled here:

* a done env's real last observation is ``infos[i]["terminal_observation"]``: it is the ``s'``
  the step's reward is computed from;
* the returned observation of a done env is already the next episode's reset observation: it
  becomes that env's new ``s`` (cached potential, restarted frame window, zeroed hold count);
* ``terminated = done and not infos[i]["TimeLimit.truncated"]`` (PBRS zeroes ``Phi(s')`` only
  then).

Stack these *under* SB3's own ``VecTransposeImage`` (the algorithm adds it on top) and
``VecNormalize``, so the model sees the env's raw observations.

>>> import gymnasium as gym
>>> from stable_baselines3.common.vec_env import DummyVecEnv
>>> venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
>>> venv = VecPBRS(venv, lambda batch: batch["state"][:, 0], gamma=0.99)
>>> _ = venv.reset()
>>> _, rewards, _, infos = venv.step(venv.action_space.sample()[None].repeat(2, 0))
>>> rewards.shape, sorted(k for k in infos[0] if k in ("env_reward", "shaping_reward", "potential"))
((2,), ['env_reward', 'potential', 'shaping_reward'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.spaces import obs_to_dict
from reward_wrappers.single import mirror_success
from reward_wrappers.cores.rewards import (ENV_REWARD, INFO_PREFIX, FrameReader, LearnedRewardCore, PBRSCore, ProgressCore,
                                  info_value, model_info_keys, model_keys, validated_model)
from reward_wrappers.cores.ops import NumpyOps
from reward_wrappers.twins import MISSING, Twin

__all__ = ["VecLearnedReward", "VecPBRS", "VecProgressReward"]

#: One ``dict`` per env, as SB3 VecEnvs return them.
VecInfos = list[dict[str, Any]]
#: Info keys whose value describes the *next* episode's first frame (written for done envs only).
RESET_PREFIX = "reset_"


class VecCoreWrapper(Twin, VecEnvWrapper):
    """Feeds a :mod:`reward_wrappers.cores.rewards` core from an SB3 VecEnv (see the module docstring)."""

    env_arg = ("venv", "VecEnv")

    def __init__(self, venv: VecEnv, model: Any = MISSING, **options: Any) -> None:
        model, options = self.model_and_options(model, options)
        core = self.core_class(validated_model(model, venv.observation_space, what="VecEnv"), venv.num_envs, NumpyOps(),
                               **options)
        VecEnvWrapper.__init__(self, venv)
        self.core = core
        self.expose(core)
        self._keys = model_keys(core.model, venv.observation_space)
        self._reader = FrameReader(venv.observation_space, self._keys)
        self._info_keys = model_info_keys(core.model)

    def _frames(self, obs: VecEnvObs, infos: VecInfos) -> dict[str, np.ndarray]:
        """The model's keys of ``obs``, plus the info values it reads (one info per env)."""
        frames = self._reader.batched(obs)
        for key in self._info_keys:
            frames[INFO_PREFIX + key] = np.stack([np.asarray(info_value(info, key, "VecEnv's")) for info in infos])
        return frames  # type: ignore[return-value]

    def _base_reset_infos(self) -> VecInfos:
        # The base VecEnv's, for the info values a model reads: SB3's VecEnvWrappers (VecMonitor,
        # VecNormalize...) keep their own empty reset_infos, which autoresets never update.
        return getattr(self.venv.unwrapped, "reset_infos", None) or [{} for _ in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        extras = self.core.begin(self._frames(obs, self._base_reset_infos()))
        # The wrapper's own reset_infos: the inner ones plus e.g. the cached Phi(s_0).
        inner = getattr(self.venv, "reset_infos", None) or [{} for _ in range(self.num_envs)]
        self.reset_infos = [dict(info) for info in inner]
        for key, values in extras.items():
            for info, value in zip(self.reset_infos, values.tolist()):
                info[key] = value
        return obs

    def _next_frames(self, frames: dict[str, np.ndarray], dones: np.ndarray, infos: VecInfos) -> dict[str, np.ndarray]:
        """``s'`` per env: the returned obs, or ``terminal_observation`` where the env is done."""
        next_frames = {k: np.array(v, copy=True) for k, v in frames.items()}
        for i in np.flatnonzero(dones):
            terminal = obs_to_dict(infos[i]["terminal_observation"], self.observation_space)
            for key in self._keys:
                next_frames[key][i] = terminal[key]
            for key in self._info_keys:  # the terminal step's own info
                next_frames[INFO_PREFIX + key][i] = info_value(infos[i], key, "VecEnv's")
        return next_frames

    def step_wait(self) -> VecEnvStepReturn:
        obs, env_rewards, dones, infos = self.venv.step_wait()
        if not isinstance(infos, list):  # SubprocVecEnv returns a tuple
            infos = list(infos)
        dones = np.asarray(dones, dtype=bool)
        any_done = np.count_nonzero(dones) != 0
        if self._info_keys and any_done:  # done envs' returned obs start new episodes: their reset infos
            reset_infos = self._base_reset_infos()
            frames = self._frames(obs, [reset_infos[i] if done else info for i, (info, done) in enumerate(zip(infos, dones))])
        else:
            frames = self._frames(obs, infos)
        env_rewards = np.asarray(env_rewards, dtype=np.float64)
        if any_done:
            truncated = np.fromiter((bool(info.get("TimeLimit.truncated", False)) for info in infos), bool, len(infos))
            out = self.core.step(
                self._next_frames(frames, dones, infos), env_rewards, dones & ~truncated, ended=dones, restart_frames=frames,
                last=dones,
            )
        else:  # nothing terminated, nothing restarts: the returned obs are every env's s'
            out = self.core.step(frames, env_rewards, dones)
        # Per-env values as Python scalars, one key at a time (a tight loop per key is the
        # cheapest way to fill B dicts); the env's own reward only where no inner reward
        # wrapper recorded it.
        for key, values in out.info.items():
            if key.startswith(RESET_PREFIX):
                continue
            if key == ENV_REWARD:
                for info, value in zip(infos, values.tolist()):
                    if ENV_REWARD not in info:
                        info[ENV_REWARD] = value
            else:
                for info, value in zip(infos, values.tolist()):
                    info[key] = value
        for info in infos:
            mirror_success(info)
        if any_done:
            inner = getattr(self.venv, "reset_infos", None)
            for i in np.flatnonzero(dones):
                self.reset_infos[i] = dict(inner[i]) if inner else {}
                for key, values in out.info.items():
                    if key.startswith(RESET_PREFIX):
                        infos[i][key] = values[i].item()
                        self.reset_infos[i][key[len(RESET_PREFIX) :]] = values[i].item()
        return obs, out.reward, dones, infos


class VecLearnedReward(VecCoreWrapper, core=LearnedRewardCore, without=("terminate_on_success",)):
    """SB3 VecEnv twin of :class:`reward_wrappers.learned_reward.LearnedReward` (same arguments).

    ``terminate_on_success`` is per-env only (a VecEnv has already auto-reset its envs when
    this wrapper sees the step); wrap each env with ``LearnedReward`` for that.

    >>> import envs, numpy as np
    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = make_vec_env(lambda: envs.make("PointReach-v0"), n_envs=2, seed=0)
    >>> venv = VecLearnedReward(venv, lambda batch: np.full(len(batch["state"]), 3.0))
    >>> _ = venv.reset()
    >>> _, rewards, _, infos = venv.step(np.zeros((2, 2), np.float32))
    >>> rewards.round(3).tolist(), "env_reward" in infos[0]  # sigmoid(3) per env
    ([0.953, 0.953], True)
    """


class VecPBRS(VecCoreWrapper, core=PBRSCore):
    """SB3 VecEnv twin of :class:`reward_wrappers.pbrs.PBRS` (same arguments).

    Done envs also get ``infos[i]["reset_potential"]``, ``Phi`` of the next episode's first
    observation (also in ``reset_infos[i]["potential"]`` after ``reset()``).
    """


class VecProgressReward(VecCoreWrapper, core=ProgressCore):
    """SB3 VecEnv twin of :class:`reward_wrappers.progress_reward.ProgressReward` (same arguments)."""
