"""``envs.make``: one factory for built-in, ManiSkill and other gymnasium ids.

Every env it returns follows the same contract (see ``ARCHITECTURE.md``):

* ``obs="state"`` -> ``Box(float32, (D,))``, ``obs="rgb"`` -> ``Box(uint8, (H, W, 3))``,
  ``obs="state+rgb"`` -> ``Dict(state=..., rgb=...)`` (SB3's ``MultiInputPolicy`` accepts it);
* ``info["success"]`` and ``info["is_success"]`` (Python bools) in every ``reset`` and ``step``
  info (for foreign gymnasium ids only when the env reports a success of its own);
* ``reward="sparse"`` pays ``1.0`` exactly on success steps, ``0.0`` otherwise;
* Python ``float`` rewards and ``bool`` flags;
* ``seed`` seeds the first ``reset()`` without a seed and the action space.

>>> import envs
>>> env = envs.make("PointReach-v0", obs="state+rgb", seed=0)
>>> obs, info = env.reset()
>>> sorted(obs), obs["rgb"].shape, info["success"]
(['rgb', 'state'], (64, 64, 3), False)
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.point_base import OBS_MODES, REWARD_MODES
from envs.options import gym_make
from envs.spaces import RenderSize, is_image_space
from envs.wrappers import (Float32State, RenderAtEpisodeEnd, RenderObservation, SeedFirstReset, SuccessInfo,
                           needs_float32)

#: Ids of the envs that ship with this package (registered with gymnasium on ``import envs``).
BUILTIN_ENV_IDS: tuple[str, ...] = ("PointReach-v0", "PointKeyDoor-v0")

_BUILTIN_SPECS: dict[str, tuple[str, int]] = {
    "PointReach-v0": ("envs.point_reach:PointReachEnv", 50),
    "PointKeyDoor-v0": ("envs.point_key_door:PointKeyDoorEnv", 100),
}


def register_builtin_envs() -> None:
    """Register :data:`BUILTIN_ENV_IDS` with gymnasium (idempotent).

    >>> register_builtin_envs()
    >>> import gymnasium as gym
    >>> gym.spec("PointReach-v0").max_episode_steps
    50
    """
    for env_id, (entry_point, max_steps) in _BUILTIN_SPECS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


def _is_maniskill_spec(spec: gym.envs.registration.EnvSpec) -> bool:
    entry = spec.entry_point
    module = getattr(getattr(entry, "func", entry), "__module__", None) or (
        entry if isinstance(entry, str) else ""
    )
    return str(module).startswith("mani_skill")


def _maniskill_ids() -> frozenset[str] | None:
    """ManiSkill's registered ids, importing ManiSkill; ``None`` if it is not installed."""
    try:
        import mani_skill.envs  # noqa: F401  (registers the tasks with gymnasium)
        from mani_skill.utils.registration import REGISTERED_ENVS
    except ImportError:
        return None
    return frozenset(REGISTERED_ENVS)


def is_maniskill_id(env_id: str) -> bool:
    """True when ``env_id`` names a ManiSkill task (imports ManiSkill only if it must).

    >>> is_maniskill_id("PointReach-v0")
    False
    """
    env_id = resolve_env_id(env_id)
    if env_id in _BUILTIN_SPECS:
        return False
    spec = gym.registry.get(env_id)
    if spec is not None:
        return _is_maniskill_spec(spec)
    ms_ids = _maniskill_ids()
    return ms_ids is not None and env_id in ms_ids


def supports_ignore_terminations(env_id: str) -> bool:
    """Whether ``make(env_id, ignore_terminations=True)`` is available (built-in and ManiSkill ids).

    >>> supports_ignore_terminations("PointReach-v0"), supports_ignore_terminations("CartPole-v1")
    (True, False)
    """
    return resolve_env_id(env_id) in _BUILTIN_SPECS or is_maniskill_id(env_id)


#: The env families training defaults are chosen for (:func:`env_family`).
ENV_FAMILIES: tuple[str, ...] = ("builtin", "maniskill", "gymnasium")


def env_family(env_id: str) -> str:
    """``"builtin"``, ``"maniskill"`` or ``"gymnasium"`` (any other registered id).

    >>> env_family("PointReach-v0"), env_family("CartPole-v1")
    ('builtin', 'gymnasium')
    """
    if resolve_env_id(env_id) in _BUILTIN_SPECS:
        return "builtin"
    return "maniskill" if is_maniskill_id(env_id) else "gymnasium"


def resolve_env_id(env_id: str) -> str:
    """The plain id of ``"module:Env-id"`` (gymnasium's form), after importing ``module``, which
    registers it; other ids unchanged. The user names the module on the command line; nothing is
    imported because a file says so.

    >>> resolve_env_id("envs.point_reach:PointReach-v0")
    'PointReach-v0'
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string, got {env_id!r}")
    module, sep, plain = env_id.rpartition(":")
    if not sep:
        return env_id
    if not module or not plain:
        raise ValueError(f"env id {env_id!r}: use 'Env-id' or 'module:Env-id' (the module registers the id)")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"env id {env_id!r}: cannot import module {module!r} ({exc})") from None
    return plain


def check_env_id(env_id: str) -> None:
    """Raise the ``ValueError`` :func:`make` would, in this process, for an id it cannot build
    (so a command fails once, clearly, before any worker process starts).

    >>> check_env_id("PointReach-v0")
    """
    env_id = resolve_env_id(env_id)
    if env_id in _BUILTIN_SPECS or env_id in gym.registry:
        return
    ms_ids = _maniskill_ids()
    if ms_ids is None or env_id not in ms_ids:
        raise _unknown_id_error(env_id, ms_ids is not None)


def _unknown_id_error(env_id: str, maniskill_installed: bool) -> ValueError:
    hint = (
        "ManiSkill is installed but has no such task (e.g. 'PickCube-v1', 'PushCube-v1')."
        if maniskill_installed
        else "ManiSkill ids (e.g. 'PickCube-v1') need ManiSkill: `pip install -e .[maniskill]` "
        "(or `pip install mani_skill>=3.0.1`) and a Vulkan device (scripts/install_vulkan.sh)."
    )
    return ValueError(
        f"unknown env id {env_id!r}. Built-in ids: {', '.join(BUILTIN_ENV_IDS)}. {hint} "
        "Any other id registered with gymnasium works too (import the package that registers it first)."
    )


def make(
    env_id: str,
    *,
    obs: str = "state",
    reward: str = "dense",
    render_size: RenderSize = 64,
    seed: int | None = None,
    max_episode_steps: int | None = None,
    ignore_terminations: bool = False,
    render_at: str = "step",
    **kwargs: Any,
) -> gym.Env:
    """Make ``env_id`` with RewardSwap's observation, reward and success conventions.

    Args:
        env_id: a built-in id (:data:`BUILTIN_ENV_IDS`), a ManiSkill id (``"PickCube-v1"``...;
            needs ``mani_skill``, imported only then), any other registered gymnasium id, or
            ``"module:Env-id"`` (``module`` is imported first; it registers the id).
        obs: ``"state"``, ``"rgb"`` or ``"state+rgb"``.
        reward: ``"dense"`` (the task's shaped reward; ManiSkill ``normalized_dense``) or
            ``"sparse"`` (``1.0`` on success steps, else ``0.0``).
        render_size: ``rgb`` image size, ``n`` (square) or ``(height, width)`` (ManiSkill: the sensor camera resolution).
        seed: seeds the first ``reset()`` that has no seed, and the action space.
        max_episode_steps: overrides the registered time limit (truncation).
        ignore_terminations: never terminate on success (built-in and ManiSkill envs only).
        render_at: ``"step"``, or ``"episode-end"``: with ``obs="state+rgb"`` and full-length
            episodes, the image is rendered on each episode's last step only and is blank before
            (:class:`~envs.wrappers.RenderAtEpisodeEnd`; a reward paid at episode end reads nothing else).
        **kwargs: passed to the env constructor (ManiSkill: ``gym.make``; e.g. ``control_mode``,
            default ``"pd_ee_delta_pos"``).

    Returns:
        A ``gymnasium.Env``. ``env.unwrapped`` is the raw task (for ManiSkill the batched
        torch env, which the scripted experts read).

    Raises:
        ValueError: unknown id, or an unknown ``obs`` / ``reward`` mode.

    >>> env = make("PointKeyDoor-v0", reward="sparse", seed=1)
    >>> obs, info = env.reset()
    >>> obs.shape, info["has_key"], info["is_success"]
    ((9,), False, False)
    """
    if obs not in OBS_MODES:
        raise ValueError(f"obs must be one of {OBS_MODES}, got {obs!r}")
    if reward not in REWARD_MODES:
        raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
    env_id = resolve_env_id(env_id)
    register_builtin_envs()
    limit = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}

    if env_id in _BUILTIN_SPECS:
        env = gym_make(env_id, kwargs, obs_mode=obs, reward_mode=reward, render_size=render_size,
                       ignore_terminations=ignore_terminations, **limit, **kwargs)
    else:
        spec = gym.registry.get(env_id)
        maniskill = spec is not None and _is_maniskill_spec(spec)
        if spec is None:
            ms_ids = _maniskill_ids()
            if ms_ids is None or env_id not in ms_ids:
                raise _unknown_id_error(env_id, ms_ids is not None)
            maniskill = True
        if maniskill:
            from envs.maniskill import make_maniskill

            env = make_maniskill(
                env_id,
                obs=obs,
                reward=reward,
                render_size=render_size,
                ignore_terminations=ignore_terminations,
                limit=limit,
                **kwargs,
            )
        else:
            env = _make_gym(env_id, obs, reward, render_size, ignore_terminations, limit, kwargs)

    if render_at != "step":
        env = _render_at_episode_end(env, env_id, obs, render_at, ignore_terminations)
    if seed is not None:
        env = SeedFirstReset(env, seed)
    return env


#: When ``make`` renders the images of ``obs="state+rgb"``.
RENDER_AT: tuple[str, ...] = ("step", "episode-end")


def _render_at_episode_end(env: gym.Env, env_id: str, obs: str, render_at: str, ignore_terminations: bool) -> gym.Env:
    if render_at not in RENDER_AT:
        raise ValueError(f"render_at must be one of {RENDER_AT}, got {render_at!r}")
    if obs != "state+rgb":
        raise ValueError(f"render_at='episode-end' renders the image of obs='state+rgb' once per episode; got obs={obs!r}")
    if not ignore_terminations:
        raise ValueError("render_at='episode-end' needs full-length episodes (ignore_terminations=True): an episode "
                         "that ends early would end on a frame that was not rendered")
    # gymnasium's TimeLimit and ManiSkill's TimeLimitWrapper both keep it here
    steps = next((e._max_episode_steps for e in _wrappers(env) if getattr(e, "_max_episode_steps", None)), None)
    if steps is None:
        raise ValueError(f"render_at='episode-end': {env_id!r} has no time limit; pass max_episode_steps")
    if env_id in _BUILTIN_SPECS:
        def switch(on: bool) -> None:
            env.unwrapped.render_rgb = on
    else:
        from envs.maniskill import rendering_switch

        switch = rendering_switch(env)
    return RenderAtEpisodeEnd(env, steps, switch)


def _wrappers(env: gym.Env) -> list[gym.Env]:
    out = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def _make_gym(
    env_id: str,
    obs: str,
    reward: str,
    render_size: RenderSize,
    ignore_terminations: bool,
    limit: dict[str, int],
    kwargs: dict[str, Any],
) -> gym.Env:
    """Any other registered gymnasium id."""
    if ignore_terminations:
        raise ValueError(
            f"ignore_terminations=True is supported for built-in and ManiSkill ids only, not {env_id!r}"
        )
    if obs != "state":
        kwargs = {"render_mode": "rgb_array", **kwargs}
    env = gym_make(env_id, kwargs, **limit, **kwargs)
    # Goal-conditioned envs (the Dict of observation / achieved_goal / desired_goal that SB3's HER
    # reads) report ``is_success`` on steps only; their reset frame is not yet a success.
    goal_env = isinstance(env.observation_space, spaces.Dict) and {"achieved_goal", "desired_goal"} <= set(
        env.observation_space.spaces
    )
    env = _flat_state(env)
    if obs != "state":
        if env.render_mode != "rgb_array":
            raise ValueError(f"obs={obs!r} needs {env_id!r} to support render_mode='rgb_array'")
        env = RenderObservation(env, size=render_size, keep_state=obs == "state+rgb")
    elif needs_float32(env.observation_space):
        env = Float32State(env)  # ``state`` is float32 for every family (ARCHITECTURE.md)
    return SuccessInfo(env, sparse=reward == "sparse", reset_default=False if goal_env else None)


def _flat_state(env: gym.Env) -> gym.Env:
    """A foreign env's ``Dict`` observation as one vector, the contract's ``state``.

    Goal-conditioned suites (gymnasium-robotics' Fetch: ``observation``, ``achieved_goal``,
    ``desired_goal``) observe a ``Dict``; its non-image entries are concatenated in the space's key
    order (gymnasium's ``FlattenObservation``). Image entries are left out: ``obs="rgb"`` renders.
    """
    space = env.observation_space
    if not isinstance(space, spaces.Dict):
        return env
    keys = [key for key, sub in space.spaces.items() if not is_image_space(sub)]
    if not keys:
        raise ValueError(
            f"{env.spec.id if env.spec else env}: its Dict observation has only image entries "
            f"({', '.join(space.spaces)}); use obs='rgb' (the env's render()) or a state-observing env"
        )
    if len(keys) < len(space.spaces):
        env = gym.wrappers.FilterObservation(env, keys)
    return gym.wrappers.FlattenObservation(env)


def step_seconds(env_id: str, *, steps: int = 10, **make_kwargs: Any) -> float:
    """Make one env in this process, reset it and take ``steps`` random actions; return the median
    seconds per step. A bad id or constructor argument fails here, once, with a ``ValueError``
    (commands call this before they start worker processes), and the cost of a step tells
    whether worker processes pay for themselves.

    >>> step_seconds("PointReach-v0", steps=3) < 1.0
    True
    """
    import time

    env = make(env_id, seed=0, **make_kwargs)
    try:
        env.reset()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            times.append(time.perf_counter() - start)
            if terminated or truncated:
                env.reset()
        return sorted(times)[len(times) // 2]
    finally:
        env.close()
