"""``PointReach-v0`` and ``PointKeyDoor-v0`` as torch-batched envs: thousands of envs per step on any torch device.

:class:`BatchedPointReach` (and :class:`BatchedPointKeyDoor`) follows ManiSkill's batched API (``ManiSkillVectorEnv``), so the
torch-native reward wrappers (:mod:`reward_wrappers.torch_batched`) run on it end to end without
ManiSkill: observations, rewards and flags are tensors on ``device``; autoreset is SAME_STEP (a
done env's step returns the next episode's first observation, its last one in
``info["final_observation"]`` with the mask ``info["_final_observation"]`` and its info in
``info["final_info"]``); ``reset(options={"env_idx": idx})`` resets some envs.

It is the same env as the per-env :class:`~envs.point_reach.PointReachEnv` (and
:class:`~envs.point_key_door.PointKeyDoorEnv`), step for step: the dynamics run in float64 like
the per-env env's Python floats, and each env draws its start and targets from its own generator seeded ``seed + i`` (as gymnasium's vector envs seed their sub-envs),
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
from envs.point_key_door import PointKeyDoorEnv
from envs.point_reach import PointReachEnv

__all__ = ["BatchedPointKeyDoor", "BatchedPointReach"]


class _BatchedPointMass(VectorEnv):
    """The point-mass dynamics of :class:`~envs.point_base.PointMassEnv` for ``num_envs`` envs as
    tensors; a subclass holds its task's targets in ``self.task`` (the per-env env's task state,
    ``(num_envs, TASK_STATE_DIM)``) and writes :meth:`_update_task` as the per-env env does."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    #: The per-env env this batches (its sampler places starts and targets; its constants apply).
    SINGLE: type[PointMassEnv] = PointMassEnv
    #: Extra per-env info flags (bool tensors) the per-env env reports beside ``success``.
    INFO_FLAGS: tuple[str, ...] = ()

    def __init__(self, num_envs: int, *, device: str | torch.device = "cpu", reward_mode: str = "dense",
                 max_episode_steps: int = 50, ignore_terminations: bool = False) -> None:
        if num_envs < 1 or max_episode_steps < 1 or reward_mode not in ("dense", "sparse"):
            raise ValueError(f"need num_envs >= 1, max_episode_steps >= 1 and reward_mode dense|sparse; got {num_envs}, "
                             f"{max_episode_steps}, {reward_mode!r}")
        self.num_envs, self.device = int(num_envs), torch.device(device)
        self.max_episode_steps, self.ignore_terminations = int(max_episode_steps), bool(ignore_terminations)
        self.sparse = reward_mode == "sparse"
        dim = 4 + self.SINGLE.TASK_STATE_DIM
        self.single_observation_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Starts and targets come from per-env generators, through the per-env env's own sampler.
        self._samplers = [self.SINGLE() for _ in range(self.num_envs)]
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=self.device)  # noqa: E731
        self.pos, self.vel, self.task = zeros(self.num_envs, 2), zeros(self.num_envs, 2), zeros(self.num_envs, dim - 4)
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _obs(self) -> torch.Tensor:
        return torch.cat([self.pos, self.vel, self.task], dim=1).float()

    def _update_task(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """After a move: success, the dense reward and the info flags, per env."""
        raise NotImplementedError

    def _reset_envs(self, idx: list[int], seed: Optional[int]) -> None:
        starts = []
        for i in idx:
            sampler = self._samplers[i]
            sampler.reset(seed=None if seed is None else seed + i)
            starts.append((sampler.px, sampler.py, *sampler._task_state()))
        rows = torch.as_tensor(idx, device=self.device)
        values = torch.as_tensor(starts, dtype=torch.float64, device=self.device)
        self.pos[rows], self.task[rows], self.vel[rows], self.elapsed[rows] = values[:, :2], values[:, 2:], 0.0, 0

    def _info(self, success: torch.Tensor, flags: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"success": success, **flags}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[torch.Tensor, dict[str, Any]]:
        idx = list(range(self.num_envs)) if not options or "env_idx" not in options else torch.as_tensor(options["env_idx"]).tolist()
        self._reset_envs(idx, seed)
        success, _, flags = self._update_task()
        return self._obs(), self._info(success, flags)

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        a = torch.as_tensor(actions, device=self.device).to(torch.float64).reshape(self.num_envs, 2)
        a = torch.nan_to_num(a, nan=0.0).clamp(-1.0, 1.0)  # as the per-env env: bounded, NaN -> no motion
        self.vel = self.vel * PointMassEnv.DAMPING + a * PointMassEnv.ACCEL
        self.pos = self.pos + self.vel
        hit = self.pos.abs() > 1.0  # a wall stops the motion along its axis
        self.pos, self.vel = self.pos.clamp(-1.0, 1.0), torch.where(hit, torch.zeros_like(self.vel), self.vel)
        self.elapsed += 1
        success, dense, flags = self._update_task()
        reward = success.double() if self.sparse else dense
        terminated = success & (not self.ignore_terminations)
        truncated = self.elapsed >= self.max_episode_steps  # as TimeLimit: also on a terminating step
        obs, info = self._obs(), self._info(success, flags)
        done = terminated | truncated
        if done.any():
            final_obs = obs
            final_info = {**{k: v.clone() for k, v in info.items()}, "elapsed_steps": self.elapsed.clone()}
            obs, info = self.reset(options={"env_idx": torch.nonzero(done).flatten()})
            info.update(final_observation=final_obs, _final_observation=done, final_info=final_info, _final_info=done)
        return obs, reward.float(), terminated, truncated, info


class BatchedPointReach(_BatchedPointMass):
    """``num_envs`` PointReach-v0 envs as batched tensors on ``device`` (see the module docstring)."""

    SINGLE = PointReachEnv

    def _update_task(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        dist = torch.hypot(self.pos[:, 0] - self.task[:, 0], self.pos[:, 1] - self.task[:, 1])
        return dist <= PointReachEnv.GOAL_RADIUS, -dist / ARENA_DIAGONAL, {}


class BatchedPointKeyDoor(_BatchedPointMass):
    """``num_envs`` PointKeyDoor-v0 envs (two stages: the key, then the door) as batched tensors;
    ``info["has_key"]`` as the per-env env reports it.

    >>> env = BatchedPointKeyDoor(num_envs=8)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, bool(info["has_key"].any())
    (torch.Size([8, 9]), False)
    """

    SINGLE = PointKeyDoorEnv

    def _update_task(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.pos[:, 0], self.pos[:, 1]
        kx, ky, dx, dy = self.task[:, 0], self.task[:, 1], self.task[:, 2], self.task[:, 3]
        to_key = torch.hypot(x - kx, y - ky)
        has_key = (self.task[:, 4] > 0.5) | (to_key <= PointKeyDoorEnv.KEY_RADIUS)  # held for the rest of the episode
        self.task[:, 4] = has_key.double()
        to_door = torch.hypot(x - dx, y - dy)
        remaining = torch.where(has_key, to_door, to_key + torch.hypot(kx - dx, ky - dy))
        return has_key & (to_door <= PointKeyDoorEnv.DOOR_RADIUS), -remaining / (2.0 * ARENA_DIAGONAL), {"has_key": has_key}
