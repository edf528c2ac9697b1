"""Scripted experts: ``envs.expert_policy(env, noise, seed)`` returns ``policy(obs) -> action``.

Experts read privileged state from ``env.unwrapped`` (not the observation), so they work in
every observation mode. Supported: the built-in ``PointReach-v0`` and ``PointKeyDoor-v0`` (a
saturated PD controller towards the current target) and ManiSkill ``PickCube-v1`` and
``PushCube-v1`` (scripted end-effector controllers for ``control_mode="pd_ee_delta_pos"``;
see :mod:`envs.maniskill_experts`; ManiSkill's motion planner is not used).

``noise`` in ``[0, 1]`` makes the expert worse: with probability ``noise`` an action is replaced
by a uniformly random one, and the others get Gaussian noise of standard deviation ``noise``
(in units of the action bound), clipped to the action space. ``noise=0`` is the clean expert,
``noise=1`` acts uniformly at random. ``seed`` makes the noise reproducible.

>>> import envs
>>> env = envs.make("PointKeyDoor-v0", seed=0)
>>> policy = envs.expert_policy(env, noise=0.0)
>>> obs, info = env.reset()
>>> while True:
...     obs, reward, terminated, truncated, info = env.step(policy(obs))
...     if terminated or truncated:
...         break
>>> info["has_key"], info["success"]
(True, True)
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.point_key_door import PointKeyDoorEnv
from envs.point_reach import PointReachEnv

Policy = Callable[[Any], np.ndarray]

#: Env ids that :func:`expert_policy` has an expert for.
SUPPORTED_EXPERT_ENV_IDS: tuple[str, ...] = (
    "PointReach-v0",
    "PointKeyDoor-v0",
    "PickCube-v1",
    "PushCube-v1",
)

# PD gains of the point-mass experts (actions saturate far from the target, brake near it).
_KP = 10.0
_KD = 20.0


def _point_action(env: Any, tx: float, ty: float) -> np.ndarray:
    ax = _KP * (tx - env.px) - _KD * env.vx
    ay = _KP * (ty - env.py) - _KD * env.vy
    return np.clip(np.array([ax, ay], dtype=np.float32), -1.0, 1.0)


def _point_reach_expert(env: PointReachEnv) -> Callable[[Any], np.ndarray]:
    return lambda obs: _point_action(env, env.gx, env.gy)


def _point_key_door_expert(env: PointKeyDoorEnv) -> Callable[[Any], np.ndarray]:
    def act(obs: Any) -> np.ndarray:
        if env.has_key:
            return _point_action(env, env.dx, env.dy)
        return _point_action(env, env.kx, env.ky)

    return act


def add_noise(
    act: Callable[[Any], np.ndarray], action_space: gym.spaces.Box, noise: float, seed: int | None
) -> Policy:
    """Wrap a clean policy with the ``noise`` model described in the module docstring.

    >>> from gymnasium import spaces
    >>> box = spaces.Box(-1, 1, (2,), np.float32)
    >>> noisy = add_noise(lambda obs: np.zeros(2, np.float32), box, noise=1.0, seed=0)
    >>> bool(np.any(noisy(None) != 0))
    True
    """
    if not 0.0 <= float(noise) <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")
    noise = float(noise)
    if noise == 0.0:
        return act
    rng = np.random.default_rng(seed)
    low = np.asarray(action_space.low, np.float32)
    high = np.asarray(action_space.high, np.float32)
    half = (high - low) / 2.0

    def noisy(obs: Any) -> np.ndarray:
        clean = act(obs)
        if rng.random() < noise:
            action = rng.uniform(low, high)
        else:
            action = clean + rng.normal(0.0, noise, size=clean.shape) * half
        return np.clip(action, low, high).astype(action_space.dtype)

    return noisy


def expert_policy(env: gym.Env, noise: float = 0.0, seed: int | None = None) -> Policy:
    """A scripted expert for ``env`` (made by :func:`envs.make` or ``gym.make``).

    Args:
        env: the env the policy will act in; the expert reads its privileged state through
            ``env.unwrapped`` at every call, so keep using the same env object.
        noise: ``0`` = clean expert, ``1`` = uniformly random actions (see module docstring).
        seed: seeds the noise.

    Returns:
        ``policy(obs) -> action`` (an ``np.ndarray`` in ``env.action_space``). ``obs`` is
        accepted for API symmetry and ignored.

    Raises:
        ValueError: no expert for this env, or ``noise`` outside ``[0, 1]``.

    >>> import envs
    >>> env = envs.make("PointReach-v0", seed=0)
    >>> obs, _ = env.reset()
    >>> envs.expert_policy(env)(obs).shape
    (2,)
    """
    base = env.unwrapped
    if isinstance(base, PointKeyDoorEnv):
        act = _point_key_door_expert(base)
    elif isinstance(base, PointReachEnv):
        act = _point_reach_expert(base)
    else:
        env_id = base.spec.id if base.spec is not None else type(base).__name__
        if env_id in ("PickCube-v1", "PushCube-v1"):
            from envs.maniskill_experts import maniskill_expert

            act = maniskill_expert(env, env_id)
        else:
            raise ValueError(
                f"no scripted expert for {env_id!r}; supported: {', '.join(SUPPORTED_EXPERT_ENV_IDS)}"
            )
    return add_noise(act, env.action_space, noise, seed)
