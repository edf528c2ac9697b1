"""``check_reward_stack``: what users assert in their own pytest suites, in the spirit of
gymnasium's and SB3's ``check_env``, for their env factory and reward model:

1. observations and labels pass through :class:`collectors.TrajectoryRecorder` unchanged (same
   keys, shapes, dtypes and values as the loop saw; ``labels[t]`` the success flag of frame ``t``);
2. the per-env :class:`LearnedReward`, SB3's :class:`VecLearnedReward` and gymnasium's
   :class:`VectorLearnedReward` (same-step autoreset) pay the same rewards for the same seeds and
   actions;
3. :class:`PBRS` telescopes: over every episode, ``sum_t gamma^t F_t = gamma^T Phi(s_T) - Phi(s_0)``
   with ``Phi(s_T) = 0`` when the episode terminated (kept when it was truncated);
4. a reward model that returns NaN is refused (``FloatingPointError``), not paid to the agent.

Each check raises ``AssertionError`` saying what differs; the function returns the counts it saw.

>>> from envs.dummy import CountingEnv
>>> report = check_reward_stack(lambda: CountingEnv(max_len=8, max_steps=5), lambda b: b["state"][:, 1], steps=40)
>>> report["terminated_episodes"] > 0 and report["truncated_episodes"] > 0
True
"""

from __future__ import annotations

import tempfile
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from collectors import TrajectoryRecorder, load_trajectories
from envs.spaces import obs_to_dict
from reward_wrappers.models.base import ModelLike
from reward_wrappers.cores.rewards import validated_model
from reward_wrappers.learned_reward import LearnedReward
from reward_wrappers.pbrs import PBRS
from reward_wrappers.sb3 import VecLearnedReward
from reward_wrappers.vector import VectorLearnedReward

EnvFactory = Callable[[], gym.Env]


def check_reward_stack(make_env: EnvFactory, model: ModelLike, *, gamma: float = 0.99, steps: int = 100,
                       n_envs: int = 2, seed: int = 0, success_key: str = "success") -> dict[str, int]:
    """Run the four checks of the module docstring on ``make_env()`` and ``model``."""
    model = validated_model(model, make_env().observation_space)
    report = _check_recorder(make_env, steps, seed, success_key)
    report.update(_check_twins(make_env, model, steps, n_envs, seed))
    report.update(_check_pbrs(make_env, model, gamma, steps, seed))
    _check_nan_refused(make_env, seed)
    return report


def _copy(obs: Any, space: Any) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in obs_to_dict(obs, space).items()}  # envs may reuse buffers


def _actions(env: gym.Env, steps: int, seed: int) -> list[Any]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(steps)]


def _check_recorder(make_env: EnvFactory, steps: int, seed: int, success_key: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as out:
        env = TrajectoryRecorder(make_env(), out, success_key=success_key, async_write=False)
        seen: list[list[dict[str, np.ndarray]]] = []
        flags: list[list[bool | None]] = []
        obs, info = env.reset(seed=seed)
        seen.append([_copy(obs, env.observation_space)])
        flags.append([info.get(success_key)])
        for action in _actions(env, steps, seed):
            obs, _, terminated, truncated, info = env.step(action)
            seen[-1].append(_copy(obs, env.observation_space))
            flags[-1].append(info.get(success_key))
            if terminated or truncated:
                obs, info = env.reset()
                seen.append([_copy(obs, env.observation_space)])
                flags.append([info.get(success_key)])
        env.close()
        finished = seen[:-1]  # the last episode never ended, so it was not written
        recorded = sorted(load_trajectories(out), key=lambda t: t.meta["episode_index"])
        assert len(recorded) == len(finished), f"recorder wrote {len(recorded)} trajectories for {len(finished)} episodes"
        for e, (traj, frames) in enumerate(zip(recorded, finished)):
            for key in frames[0]:
                want = np.stack([f[key] for f in frames])
                got = np.asarray(traj.obs[key])
                assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), (
                    f"episode {e}: obs[{key!r}] recorded as {got.dtype}{list(got.shape)} differs from what the env "
                    f"returned ({want.dtype}{list(want.shape)})")
            if all(f is not None for f in flags[e]):
                want_labels = np.array(flags[e], np.float32)
                assert np.array_equal(np.asarray(traj.labels), want_labels), (
                    f"episode {e}: labels {np.asarray(traj.labels).tolist()} are not the per-frame "
                    f"info[{success_key!r}] flags {want_labels.tolist()}")
    return {"recorded_episodes": len(recorded)}


def _check_twins(make_env: EnvFactory, model: Any, steps: int, n_envs: int, seed: int) -> dict[str, int]:
    probe = make_env()
    per_env_actions = [_actions(probe, steps, seed + 100 + i) for i in range(n_envs)]
    reference = []
    for i in range(n_envs):
        env = LearnedReward(make_env(), model)
        env.reset(seed=seed + i)
        rewards = []
        for action in per_env_actions[i]:
            _, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            if terminated or truncated:
                env.reset()
        reference.append(rewards)
    reference_array = np.array(reference).T  # (steps, n_envs)

    sb3 = VecLearnedReward(DummyVecEnv([make_env for _ in range(n_envs)]), model)
    sb3.seed(seed)
    sb3.reset()
    gym_vec = VectorLearnedReward(SyncVectorEnv([make_env for _ in range(n_envs)], autoreset_mode=AutoresetMode.SAME_STEP),
                                  model)
    gym_vec.reset(seed=seed)
    for t in range(steps):
        actions = np.stack([per_env_actions[i][t] for i in range(n_envs)])
        _, sb3_rewards, _, _ = sb3.step(actions)
        _, gym_rewards, _, _, _ = gym_vec.step(actions)
        for name, got in (("SB3 VecLearnedReward", sb3_rewards), ("gymnasium VectorLearnedReward", gym_rewards)):
            assert np.allclose(got, reference_array[t], rtol=1e-5, atol=1e-6), (
                f"step {t}: {name} paid {np.asarray(got).tolist()}, the per-env LearnedReward "
                f"{reference_array[t].tolist()}. A stateful reward model does this; so does an env that returns "
                "one observation array overwritten in place (SB3's DummyVecEnv keeps it by reference as "
                "terminal_observation, and the reset overwrites it): return fresh arrays")
    sb3.close()
    gym_vec.close()
    return {"twin_steps": steps * n_envs}


def _check_pbrs(make_env: EnvFactory, model: Any, gamma: float, steps: int, seed: int) -> dict[str, int]:
    env = PBRS(make_env(), model, gamma=gamma)
    _, info = env.reset(seed=seed)
    phi0, shaping, kinds = info["potential"], [], {"terminated": 0, "truncated": 0}
    for action in _actions(env, steps, seed + 1):
        _, _, terminated, truncated, info = env.step(action)
        shaping.append(info["shaping_reward"])
        if terminated or truncated:
            phi_end = 0.0 if terminated else info["potential"]
            discounted = sum(gamma**t * f for t, f in enumerate(shaping))
            expected = gamma ** len(shaping) * phi_end - phi0
            assert np.isclose(discounted, expected, rtol=1e-5, atol=1e-6), (
                f"PBRS does not telescope over a {'terminated' if terminated else 'truncated'} episode of "
                f"{len(shaping)} steps: sum gamma^t F_t = {discounted}, gamma^T Phi(s_T) - Phi(s_0) = {expected}")
            kinds["terminated" if terminated else "truncated"] += 1
            _, info = env.reset()
            phi0, shaping = info["potential"], []
    env.close()
    return {f"{k}_episodes": v for k, v in kinds.items()}


def _check_nan_refused(make_env: EnvFactory, seed: int) -> None:
    env = LearnedReward(make_env(), lambda batch: np.full(len(next(iter(batch.values()))), np.nan))
    env.reset(seed=seed)
    try:
        env.step(env.action_space.sample())
    except FloatingPointError:
        return
    finally:
        env.close()
    raise AssertionError("a reward model returning NaN was paid to the agent instead of refused")


__all__ = ["EnvFactory", "check_reward_stack"]
