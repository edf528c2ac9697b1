"""``PointReach-v0`` as one torch-batched env: thousands of envs per step on any torch device.

:class:`BatchedPointReach` follows ManiSkill's batched API (``ManiSkillVectorEnv``), so the
torch-native reward wrappers (:mod:`reward_wrappers.torch_batched`) run on it end to end without
ManiSkill: observations, rewards and flags are tensors on ``device``; autoreset is SAME_STEP (a
done env's step returns the next episode's first observation, its last one in
``info["final_observation"]`` with the mask ``info["_final_observation"]`` and its info in
``info["final_info"]``); ``reset(options={"env_idx": idx})`` resets some envs.

It is the same env as the per-env :class:`~envs.point_reach.PointReachEnv`, step for step: the
dynamics run in float64 like the per-env env's Python floats, and each env draws its start and
goal from its own generator seeded ``seed + i`` (as gymnasium's vector envs seed their sub-envs),
so for equal seeds and actions both give the same observations, rewards and flags
(``tests/test_batched_env.py``). State observations only.

>>> env = BatchedPointReach(num_envs=1024)
>>> obs, info = env.reset(seed=0)
>>> obs.shape, obs.dtype, info["success"].shape
(torch.Size([1024, 6]), torch.float32, torch.Size([1024]))
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.point_base import ARENA_DIAGONAL, PointMassEnv
from envs.point_reach import PointReachEnv

__all__ = ["BatchedPointReach"]


class BatchedPointReach(VectorEnv):
    """``num_envs`` PointReach-v0 envs as batched tensors on ``device`` (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, *, device: str | torch.device = "cpu", reward_mode: str = "dense",
                 max_episode_steps: int = 50, ignore_terminations: bool = False) -> None:
        if num_envs < 1 or max_episode_steps < 1 or reward_mode not in ("dense", "sparse"):
            raise ValueError(f"need num_envs >= 1, max_episode_steps >= 1 and reward_mode dense|sparse; got {num_envs}, "
                             f"{max_episode_steps}, {reward_mode!r}")
        self.num_envs, self.device = int(num_envs), torch.device(device)
        self.max_episode_steps, self.ignore_terminations = int(max_episode_steps), bool(ignore_terminations)
        self.sparse = reward_mode == "sparse"
        self.single_observation_space = spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Starts and goals come from per-env generators, through the per-env env's own sampler.
        self._samplers = [PointReachEnv() for _ in range(self.num_envs)]
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=self.device)  # noqa: E731
        self.pos, self.vel, self.goal = zeros(self.num_envs, 2), zeros(self.num_envs, 2), zeros(self.num_envs, 2)
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _obs(self) -> torch.Tensor:
        return torch.cat([self.pos, self.vel, self.goal], dim=1).float()

    def _success(self) -> tuple[torch.Tensor, torch.Tensor]:
        dist = torch.hypot(self.pos[:, 0] - self.goal[:, 0], self.pos[:, 1] - self.goal[:, 1])
        return dist <= PointReachEnv.GOAL_RADIUS, dist

    def _reset_envs(self, idx: list[int], seed: Optional[int]) -> None:
        starts = []
        for i in idx:
            sampler = self._samplers[i]
            sampler.reset(seed=None if seed is None else seed + i)
            starts.append((sampler.px, sampler.py, sampler.gx, sampler.gy))
        rows = torch.as_tensor(idx, device=self.device)
        values = torch.as_tensor(starts, dtype=torch.float64, device=self.device)
        self.pos[rows], self.goal[rows], self.vel[rows], self.elapsed[rows] = values[:, :2], values[:, 2:], 0.0, 0

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[torch.Tensor, dict[str, Any]]:
        idx = list(range(self.num_envs)) if not options or "env_idx" not in options else torch.as_tensor(options["env_idx"]).tolist()
        self._reset_envs(idx, seed)
        return self._obs(), {"success": self._success()[0]}

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        a = torch.as_tensor(actions, device=self.device).to(torch.float64).reshape(self.num_envs, 2)
        a = torch.nan_to_num(a, nan=0.0).clamp(-1.0, 1.0)  # as the per-env env: bounded, NaN -> no motion
        self.vel = self.vel * PointMassEnv.DAMPING + a * PointMassEnv.ACCEL
        self.pos = self.pos + self.vel
        hit = self.pos.abs() > 1.0  # a wall stops the motion along its axis
        self.pos, self.vel = self.pos.clamp(-1.0, 1.0), torch.where(hit, torch.zeros_like(self.vel), self.vel)
        self.elapsed += 1
        success, dist = self._success()
        reward = success.double() if self.sparse else -dist / ARENA_DIAGONAL
        terminated = success & (not self.ignore_terminations)
        truncated = self.elapsed >= self.max_episode_steps  # as TimeLimit: also on a terminating step
        obs, info = self._obs(), {"success": success}
        done = terminated | truncated
        if done.any():
            final_obs, final_info = obs, {"success": success.clone(), "elapsed_steps": self.elapsed.clone()}
            obs, info = self.reset(options={"env_idx": torch.nonzero(done).flatten()})
            info.update(final_observation=final_obs, _final_observation=done, final_info=final_info, _final_info=done)
        return obs, reward.float(), terminated, truncated, info
