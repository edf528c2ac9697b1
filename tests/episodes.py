"""One-episode rollouts shared by the env tests."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym


def rollout(env: gym.Env, policy: Callable[[Any], Any], max_steps: int = 10_000) -> list[tuple]:
    """Run one episode from ``env.reset()``; return ``[(obs, reward, term, trunc, info), ...]``
    (the reset first, with reward ``None``)."""
    obs, info = env.reset()
    steps = [(obs, None, False, False, info)]
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        steps.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return steps
