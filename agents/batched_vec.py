"""An SB3 ``VecEnv`` over a torch-batched env with ManiSkill's conventions, so SB3 trains on it.

The batched env (``envs.batched.BatchedPointReach``, or a ``ManiSkillVectorEnv`` with tensor,
not Dict, observations) steps all envs in one call on its device; this adapter hands SB3 numpy
arrays and SB3's per-env ``infos``: a done env's last observation in ``infos[i]["terminal_observation"]`` (from the SAME_STEP
``info["final_observation"]``), ``infos[i]["TimeLimit.truncated"]`` for truncations, and the
success flag as ``is_success``. The reward wrappers' SB3 twins stack on top of it as on any VecEnv.

>>> from envs.batched import BatchedPointReach
>>> venv = TorchToSB3VecEnv(BatchedPointReach(num_envs=256))
>>> venv.seed(0)[:3]
[0, 1, 2]
>>> obs = venv.reset()
>>> obs.shape, venv.num_envs
((256, 6), 256)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from envs.batched import BatchedPointKeyDoor, BatchedPointReach

__all__ = ["BATCHED_ENVS", "TorchToSB3VecEnv", "make_batched_vec_env"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class TorchToSB3VecEnv(VecEnv):
    """See the module docstring."""

    def __init__(self, env: VectorEnv) -> None:
        if isinstance(env.single_observation_space, gym.spaces.Dict):
            raise ValueError("TorchToSB3VecEnv takes a batched env with tensor observations, not a Dict of them")
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: Optional[np.ndarray] = None
        self._seed: Optional[int] = None

    def seed(self, seed: Optional[int] = None) -> Sequence[None | int]:
        self._seed = seed  # env i draws from seed + i at the next reset, as SB3's own VecEnvs seed theirs
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        obs, info = self.env.reset(seed=self._seed)
        self._seed = None  # later resets continue the generators, as SB3's own VecEnvs do
        self.reset_infos = _per_env(info, range(self.num_envs), self.num_envs)
        return _numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.env.step(torch.as_tensor(self._actions))
        obs, rewards = _numpy(obs), _numpy(rewards).astype(np.float32)
        terminated, truncated = _numpy(terminated).astype(bool), _numpy(truncated).astype(bool)
        success = _numpy(info["success"]).astype(bool)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"success": bool(s), "is_success": bool(s)} for s in success]
        if dones.any():
            final_obs = _numpy(info["final_observation"])
            final_success = _numpy(info["final_info"]["success"]).astype(bool)
            restarted = _per_env(info, np.flatnonzero(dones), self.num_envs)  # the new episodes' reset info
            for i in np.flatnonzero(dones):
                self.reset_infos[i] = restarted[i]
                infos[i] = {"success": bool(final_success[i]), "is_success": bool(final_success[i]),
                            "terminal_observation": final_obs[i],
                            "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if indices is not None:  # one batched env: an attribute cannot differ between its envs
            raise NotImplementedError("TorchToSB3VecEnv sets attributes of the whole batched env only (indices=None)")
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        if indices is not None:
            raise NotImplementedError("TorchToSB3VecEnv calls methods of the whole batched env only (indices=None)")
        return [getattr(self.env, method_name)(*method_args, **method_kwargs)] * self.num_envs

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


#: Env ids with a torch-batched implementation (``train-agent --batched-device``).
BATCHED_ENVS: dict[str, type[VectorEnv]] = {"PointReach-v0": BatchedPointReach, "PointKeyDoor-v0": BatchedPointKeyDoor}


def _per_env(info: dict[str, Any], rows: Any, num_envs: int) -> list[dict[str, Any]]:
    """One plain dict per env (SB3's layout) of a batched info's per-env entries, for ``rows``."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in info.items():
        if key.startswith("_") or key.startswith("final_") or not hasattr(value, "__len__") or len(value) != num_envs:
            continue
        values = _numpy(value)
        for i in rows:
            out[i][key] = values[i].item() if values[i].ndim == 0 else values[i]
    return out


def make_batched_vec_env(env_id: str, *, n_envs: int, seed: int, device: str, obs: str, reward: str,
                         max_episode_steps: Optional[int], ignore_terminations: bool, env_kwargs: dict[str, Any]) -> VecEnv:
    """A seeded SB3 VecEnv of ``n_envs`` envs stepped as one torch-batched env on ``device``."""
    if env_id not in BATCHED_ENVS:
        raise ValueError(f"--batched-device: {env_id!r} has no torch-batched implementation; batched: {sorted(BATCHED_ENVS)}")
    if obs != "state" or env_kwargs:
        raise ValueError(f"--batched-device: the batched {env_id} has state observations and no constructor arguments "
                         f"(this run needs obs={obs!r}, env kwargs {env_kwargs})")
    venv = TorchToSB3VecEnv(BATCHED_ENVS[env_id](num_envs=n_envs, device=device, reward_mode=reward,
                                                 max_episode_steps=max_episode_steps or gym.spec(env_id).max_episode_steps,
                                                 ignore_terminations=ignore_terminations))
    venv.seed(seed)
    return VecMonitor(venv)  # episode returns and lengths for SB3's rollout/ep_rew_mean, as Monitor gives per env
