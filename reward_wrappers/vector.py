"""gymnasium ``VectorWrapper`` twins of the reward wrappers: one batched model call per step.

Every autoreset mode of gymnasium 1.x vector envs (``env.metadata["autoreset_mode"]``) is
handled:

* ``NEXT_STEP`` (the default): the step after an env's episode ends is a *reset step* (action
  ignored, reward 0, the returned obs is the new ``s_0``). The wrapper pays 0 there and starts
  the episode (caches ``Phi(s_0)``, restarts the frame window, zeroes the hold count).
* ``SAME_STEP``: an env that ends returns the reset obs at once. ``s'`` is
  ``info["final_obs"][i]`` where ``info["_final_obs"][i]``; the step's own info (e.g. the true
  ``success``) is in ``info["final_info"]``, the top-level info being the reset info.
* ``DISABLED``: no autoreset; ``reset(options={"reset_mask": mask})`` restarts the masked envs.

Per-env values are written as ``info[key]`` arrays with the usual ``info["_" + key]`` masks.

>>> import gymnasium as gym
>>> envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
>>> envs = VectorPBRS(envs, lambda batch: batch["state"][:, 0], gamma=0.99)
>>> _ = envs.reset(seed=0)
>>> _, rewards, _, _, info = envs.step(envs.action_space.sample())
>>> rewards.shape, bool(info["_shaping_reward"].all())
((2,), True)
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import numpy as np
from gymnasium.core import ActType, ObsType
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from envs.spaces import obs_to_dict
from reward_wrappers.cores.rewards import (ENV_REWARD, INFO_PREFIX, FrameReader, LearnedRewardCore, PBRSCore, ProgressCore,
                                  info_value, model_info_keys, model_keys, validated_model)
from reward_wrappers.cores.ops import Array, Mask, NumpyOps, Ops
from reward_wrappers.twins import MISSING, Twin

__all__ = ["VectorLearnedReward", "VectorPBRS", "VectorProgressReward", "VectorCoreWrapper"]

#: gymnasium's vector info: ``{key: (B,) array, "_" + key: (B,) bool mask, ...}``.
VectorInfo = dict[str, Any]
#: Info keys whose value describes the *next* episode's first frame (written for ended envs only).
RESET_PREFIX = "reset_"


class VectorCoreWrapper(Twin, VectorWrapper):
    """Feeds a :mod:`reward_wrappers.cores.rewards` core from a gymnasium vector env.

    Subclasses for other batched conventions (torch tensors, ManiSkill) override
    :meth:`_final_frames`, :meth:`_reset_mask` and :meth:`_put`. ``ops`` is the array backend
    (default: numpy).
    """

    supported_modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)
    env_arg = ("env", "VectorEnv")
    extra_options = (inspect.Parameter("ops", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Optional[Ops]"),)

    def __init__(self, env: VectorEnv, model: Any = MISSING, *, ops: Optional[Ops] = None, **options: Any) -> None:
        model, options = self.model_and_options(model, options)
        core = self.core_class(validated_model(model, env.single_observation_space, what="vector env"), env.num_envs,
                               ops or NumpyOps(), **options)
        VectorWrapper.__init__(self, env)
        self.core = core
        self.expose(core)
        self.ops: Ops = core.ops
        self._keys = model_keys(core.model, env.single_observation_space)
        self._reader = FrameReader(env.single_observation_space, self._keys)
        self._info_keys = model_info_keys(core.model)
        self.autoreset_mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if self.autoreset_mode not in self.supported_modes:
            raise ValueError(f"unsupported autoreset mode {self.autoreset_mode}; supported: {self.supported_modes}")
        self._autoreset = self.ops.falses(self.num_envs)

    # -- conventions (overridden by the torch twin) -----------------------------------------------
    def _frames(self, obs: ObsType, info: Optional[VectorInfo] = None) -> dict[str, Array]:
        """The model's keys of ``obs``, plus the info values it reads (batched ``info[key]``)."""
        frames = self._reader.batched(obs)
        if self._info_keys:
            frames = dict(frames)
            for key in self._info_keys:
                frames[INFO_PREFIX + key] = info_value(info, key, "vector env's")
        return frames

    def _reset_mask(self, options: Optional[dict[str, Any]]) -> Optional[Mask]:
        if options and "reset_mask" in options:
            return self.ops.bools(options["reset_mask"])
        return None

    def _final_frames(self, frames: dict[str, Array], info: VectorInfo) -> tuple[Optional[Mask], dict[str, Array]]:
        """Which envs ended this step (SAME_STEP) and ``s'`` for every env."""
        mask = info.get("_final_obs")
        if mask is None or np.count_nonzero(mask) == 0:
            return None, frames
        mask = np.asarray(mask, dtype=bool)
        next_frames = {k: np.array(v, copy=True) for k, v in frames.items()}
        for i in np.flatnonzero(mask):
            final = obs_to_dict(info["final_obs"][i], self.single_observation_space)
            for key in self._keys:
                next_frames[key][i] = final[key]
            for key in self._info_keys:  # the final step's own info
                next_frames[INFO_PREFIX + key][i] = info_value(info["final_info"], key, "vector env's final")[i]
        return mask, next_frames

    def _put(self, info: VectorInfo, key: str, values: Array, mask: Optional[Mask] = None) -> None:
        info[key] = values
        info["_" + key] = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)

    def _mirror_success(self, info: VectorInfo) -> None:
        if "success" in info and "is_success" not in info:
            info["is_success"] = info["success"]
            if "_success" in info:
                info["_is_success"] = info["_success"]
        final_info = info.get("final_info")
        if isinstance(final_info, dict) and final_info is not info:
            self._mirror_success(final_info)

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, VectorInfo]:
        # The mask first, and the inner env given a copy: gymnasium's vector envs pop "reset_mask" out
        # of the options dict, and without it every env's episode state would restart.
        mask = self._reset_mask(options)
        obs, info = self.env.reset(seed=seed, options=dict(options) if options else options)
        info = dict(info)
        for key, values in self.core.begin(self._frames(obs, info), mask).items():
            self._put(info, key, values, mask)
        self._autoreset = self.ops.falses(self.num_envs) if mask is None else self.ops.where(mask, False, self._autoreset)
        self._mirror_success(info)
        return obs, info

    def step(self, actions: ActType) -> tuple[ObsType, Array, Array, Array, VectorInfo]:
        obs, env_rewards, terminations, truncations, info = self.env.step(actions)
        info = dict(info)
        frames = self._frames(obs, info)
        terminated = self.ops.bools(terminations)
        env_rewards_f = self.ops.floats(env_rewards)
        fresh: Optional[Mask] = None
        ended: Optional[Mask] = None
        last = terminated | self.ops.bools(truncations)  # this step ends its episode
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            fresh = self._autoreset
            out = self.core.step(frames, env_rewards_f, terminated, fresh=fresh, last=last & ~fresh)
            self._autoreset = last
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            ended, next_frames = self._final_frames(frames, info)
            out = self.core.step(next_frames, env_rewards_f, terminated, ended=ended, restart_frames=frames, last=last)
        else:
            out = self.core.step(frames, env_rewards_f, terminated, last=last)
        for key, values in out.info.items():
            if key == ENV_REWARD:
                if ENV_REWARD not in info:  # an inner reward wrapper already recorded the env's own
                    self._put(info, key, values)
            elif key.startswith(RESET_PREFIX):
                if ended is not None:
                    self._put(info, key, values, ended)
            else:
                self._put(info, key, values)
        self._mirror_success(info)
        return obs, out.reward, terminations, truncations, info


class VectorLearnedReward(VectorCoreWrapper, core=LearnedRewardCore, without=("terminate_on_success",)):
    """gymnasium vector twin of :class:`reward_wrappers.learned_reward.LearnedReward` (same arguments).

    ``terminate_on_success`` is per-env only (the vector env decides its own autoresets); wrap
    each env with ``LearnedReward`` for that.

    >>> import gymnasium as gym, numpy as np
    >>> vec = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    >>> vec = VectorLearnedReward(vec, lambda batch: np.zeros(len(batch["state"])), output="binary")
    >>> _ = vec.reset(seed=0)
    >>> _, rewards, _, _, info = vec.step(np.zeros(3, dtype=np.int64))
    >>> rewards.tolist(), info["env_reward"].tolist()  # logit 0 -> p = 0.5, not above 0.5
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """


class VectorPBRS(VectorCoreWrapper, core=PBRSCore):
    """gymnasium vector twin of :class:`reward_wrappers.pbrs.PBRS` (same arguments).

    ``info["potential"]`` is ``Phi`` of the returned observation's frame where the step was a
    NEXT_STEP reset step (``Phi(s_0)``), else ``Phi(s')``; under SAME_STEP ended envs also get
    ``info["reset_potential"]`` (``Phi`` of the new episode's first observation).
    """


class VectorProgressReward(VectorCoreWrapper, core=ProgressCore):
    """gymnasium vector twin of :class:`reward_wrappers.progress_reward.ProgressReward` (same arguments)."""
