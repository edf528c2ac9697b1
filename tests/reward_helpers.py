"""Helpers of the reward-wrapper tests (per-env and vector): a counting env and its torch-batched
fake with ManiSkill's conventions, hand-checkable models, rollouts and the PBRS telescoping check."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers import TimeLimit

from envs.dummy import CountingEnv
from reward_wrappers import InputSpec, ModelSpec

GAMMA = 0.9


def counting_env(max_steps: int = 5, **kwargs: Any) -> gym.Env:
    return TimeLimit(CountingEnv(**kwargs), max_episode_steps=max_steps)


def state_of(obs: Any) -> Any:
    return obs["state"] if isinstance(obs, Mapping) else obs


def _xp(a: Any) -> Any:
    return torch if isinstance(a, torch.Tensor) else np


def potential_fn(batch: Mapping[str, Any]) -> Any:
    """A nonlinear potential of the counting state, numpy or torch (row-wise)."""
    s = batch["state"]
    xp = _xp(s)
    return xp.sin(s[:, 1] * 1.0) + 0.1 * s[:, 0] - 0.05 * s[:, 2]


def logit_fn(batch: Mapping[str, Any]) -> Any:
    s = batch["state"]
    return 2.0 * (s[:, 0] - 2.5) + 0.5 * s[:, 1]


def always_positive_logit(batch: Mapping[str, Any]) -> Any:
    s = batch["state"]
    return _xp(s).ones_like(s[:, 0]) * 10.0


def phi_of(obs: Any) -> float:
    """``potential_fn`` of one observation, computed independently of any wrapper."""
    s = np.asarray(state_of(obs), dtype=np.float32)[None]
    return float(potential_fn({"state": s})[0])


def check_telescoping(shaping: list[float], phi_s0: float, phi_sT: float, terminated: bool, gamma: float, tol: float = 1e-6) -> float:
    """Assert ``sum_t gamma^t F_t == gamma^T Phi(s_T) - Phi(s_0)`` (``Phi(s_T) = 0`` if terminated)."""
    T = len(shaping)
    lhs = sum(gamma**t * f for t, f in enumerate(shaping))
    rhs = gamma**T * (0.0 if terminated else phi_sT) - phi_s0
    assert abs(lhs - rhs) <= tol, (lhs, rhs, shaping, terminated)
    return abs(lhs - rhs)


class SpecModel:
    """A reward model with a spec around a function (numpy and torch batches)."""

    def __init__(self, spec: ModelSpec, fn: Callable[[Mapping[str, Any]], Any]) -> None:
        self.spec, self.fn, self.calls, self.batch_sizes = spec, fn, 0, []

    def _count(self, batch: Mapping[str, Any]) -> None:
        self.calls += 1
        self.batch_sizes.append(len(next(iter(batch.values()))))

    def predict(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        self._count(batch)
        return np.asarray(self.fn(batch), dtype=np.float64)

    def predict_torch(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._count(batch)
        assert all(isinstance(v, torch.Tensor) for v in batch.values()), "torch path got a non-tensor"
        return self.fn(batch)


def state_spec(output: str = "logit", window: int = 1, **kwargs: Any) -> ModelSpec:
    return ModelSpec(inputs={"state": InputSpec((3,), "float32")}, window=window, output=output, **kwargs)


def window_fn(batch: Mapping[str, Any]) -> Any:
    """A causal window model: weighted sum of t and x over the window (oldest first)."""
    s = batch["state"]  # (B, W, 3)
    W = s.shape[1]
    xp = _xp(s)
    weights = (xp.arange(W) + 1.0) if xp is np else torch.arange(W, dtype=s.dtype) + 1.0
    return (s[:, :, 0] * weights).sum(1) * 0.01 + (s[:, :, 1] * weights).sum(1) * 0.1


def rollout(env: gym.Env, actions: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Step ``env`` with ``actions`` (resetting on done); one record per step, reset records too."""
    records = []
    obs, info = env.reset(seed=seed)
    records.append({"reset": True, "obs": obs, "info": info})
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        records.append({"reset": False, "obs": obs, "reward": reward, "terminated": terminated, "truncated": truncated, "info": info})
        if terminated or truncated:
            obs, info = env.reset()
            records.append({"reset": True, "obs": obs, "info": info})
    return records


def actions_for(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# a torch-batched fake with ManiSkillVectorEnv's conventions
# ----------------------------------------------------------------------------------------------
class TorchBatchedCounting(VectorEnv):
    """CountingEnvs behind ManiSkillVectorEnv's API: torch tensors, SAME_STEP autoreset, the full
    pre-reset batch in ``info["final_observation"]`` with mask ``_final_observation``, batched
    ``final_info``, ``reset(options={"env_idx": ...})`` for partial resets."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, make: Optional[Callable[..., gym.Env]] = None, **kwargs: Any) -> None:
        self.envs = [(make or counting_env)(**kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.device = torch.device("cpu")
        self._obs: list[Any] = [None] * num_envs
        self._infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]

    def _stack(self) -> Any:
        if isinstance(self._obs[0], Mapping):
            return {k: torch.as_tensor(np.stack([o[k] for o in self._obs])) for k in self._obs[0]}
        return torch.as_tensor(np.stack(self._obs))

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> tuple[Any, dict]:
        idx = range(self.num_envs) if not options or "env_idx" not in options else torch.as_tensor(options["env_idx"]).tolist()
        for i in idx:
            self._obs[i], self._infos[i] = self.envs[i].reset(seed=None if seed is None else seed + i)
        return self._stack(), self._stack_info()

    def _stack_info(self) -> dict[str, Any]:
        """Every env's latest info, batched key by key as tensors (ManiSkill's batched info)."""
        return {k: torch.as_tensor(np.stack([np.asarray(info[k]) for info in self._infos])) for k in self._infos[0]}

    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        actions = torch.as_tensor(actions).numpy()
        rewards, terms, truncs = [], [], []
        for i, env in enumerate(self.envs):
            self._obs[i], r, te, tr, self._infos[i] = env.step(actions[i])
            rewards.append(r), terms.append(te), truncs.append(tr)
        obs = self._stack()
        te, tr = torch.tensor(terms), torch.tensor(truncs)
        info: dict[str, Any] = self._stack_info()
        dones = te | tr
        if dones.any():
            final_obs, final_info = obs, {k: v.clone() for k, v in info.items()}
            obs, info = self.reset(options={"env_idx": torch.nonzero(dones).flatten()})
            info.update(final_observation=final_obs, final_info=final_info, _final_info=dones, _final_observation=dones)
        return obs, torch.tensor(rewards, dtype=torch.float32), te, tr, info
