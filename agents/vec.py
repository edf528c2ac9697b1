"""Build the SB3 vector env an agent trains on: env -> (recorder) -> Monitor -> reward wrappers.

Stacking order, innermost first:

1. ``envs.make`` (true success in ``info["success"]``/``info["is_success"]``);
2. optional :class:`collectors.TrajectoryRecorder` (records the *env* reward and true labels);
3. ``Monitor``: logs the env's own return and episode length (``rollout/ep_rew_mean``);
4. at the vector level, the reward wrappers (one batched model forward per step);
5. a key selector when the policy sees fewer observation keys than the reward model.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

import envs


def _env_builder(env_id: str, rank: int, seed: int, make_kwargs: dict[str, Any], collect_dir: str | None, info_keys: tuple[str, ...]) -> Callable[[], gym.Env]:
    def build() -> gym.Env:
        # In a worker process, software rendering and torch threads contend for the same cores.
        # In the main process (DummyVecEnv) torch's threads belong to the learner: leave them.
        if multiprocessing.current_process().name != "MainProcess":
            torch.set_num_threads(1)
        env = envs.make(env_id, seed=seed + rank, **make_kwargs)
        if collect_dir is not None:
            from collectors import TrajectoryRecorder

            env = TrajectoryRecorder(env, collect_dir, info_keys=info_keys)
        return Monitor(env)

    return build


class VecKeepKeys(VecEnvWrapper):
    """Keep only ``keys`` of a Dict observation (terminal observations too): the policy's keys,
    when the reward side added others (embeddings) the evaluation env does not have."""

    def __init__(self, venv: VecEnv, keys: tuple[str, ...]) -> None:
        self.keys = keys
        space = spaces.Dict({k: venv.observation_space[k] for k in keys})  # type: ignore[index]
        super().__init__(venv, observation_space=space)

    def _keep(self, obs: Any) -> dict[str, Any]:
        return {k: obs[k] for k in self.keys}

    def reset(self) -> Any:
        return self._keep(self.venv.reset())

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = self._keep(info["terminal_observation"])
        return self._keep(obs), rewards, dones, infos


def make_vec_env(
    env_id: str,
    *,
    n_envs: int,
    seed: int,
    make_kwargs: dict[str, Any] | None = None,
    collect_dir: str | os.PathLike | None = None,
    info_keys: tuple[str, ...] = (),
    subprocess: bool | None = None,
) -> VecEnv:
    """A seeded SB3 VecEnv of ``n_envs`` copies of ``envs.make(env_id, **make_kwargs)``.

    ``subprocess=None`` picks processes for ManiSkill ids (one CPU sim per process) and a
    single process for the cheap built-in envs.
    """
    make_kwargs = dict(make_kwargs or {})
    if subprocess is None:
        subprocess = n_envs > 1 and env_id not in envs.BUILTIN_ENV_IDS
    builders = [
        _env_builder(env_id, rank, seed, make_kwargs, None if collect_dir is None else os.fspath(collect_dir), info_keys)
        for rank in range(n_envs)
    ]
    venv: VecEnv = SubprocVecEnv(builders, start_method="forkserver") if subprocess else DummyVecEnv(builders)
    venv.seed(seed)
    return venv
