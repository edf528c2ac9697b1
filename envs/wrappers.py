"""Small wrappers that give every env made by :func:`envs.make` the same contract.

* :class:`SeedFirstReset` - a ``seed`` given at construction seeds the first ``reset()`` and the
  action space, so the same seed gives the same trajectory.
* :class:`SuccessInfo` - ``info["success"]`` / ``info["is_success"]`` as Python bools in every
  ``reset`` and ``step`` info, an optional sparse reward (``1.0`` on success steps), and the
  Python ``float`` reward / ``bool`` flags that SB3's ``check_env`` demands.
* :class:`RenderObservation` - image observations for any gymnasium env that renders
  ``rgb_array`` frames (resized to a square ``size``), alone or beside the state.
* :class:`Float32State` - a floating ``Box`` observation of another dtype (MuJoCo's float64) as
  float32, the dtype the ``state`` key has everywhere else.

>>> import gymnasium as gym
>>> env = SuccessInfo(gym.make("CartPole-v1"), default=False)
>>> obs, info = env.reset(seed=0)
>>> info["success"], info["is_success"]
(False, False)
"""

from __future__ import annotations

from typing import Any, Callable, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.spaces import RenderSize, image_hw


class SeedFirstReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Use ``seed`` for the first ``reset()`` that has no seed of its own; seed the action space.

    Later resets without a seed continue the env's random stream, as in gymnasium.

    >>> import gymnasium as gym
    >>> a = SeedFirstReset(gym.make("CartPole-v1"), seed=3).reset()[0]
    >>> b = SeedFirstReset(gym.make("CartPole-v1"), seed=3).reset()[0]
    >>> bool((a == b).all())
    True
    """

    def __init__(self, env: gym.Env, seed: int | None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed)
        gym.Wrapper.__init__(self, env)
        self._pending_seed = None if seed is None else int(seed)
        if seed is not None:
            self.action_space.seed(int(seed))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _as_bool(value: Any) -> bool:
    """A Python bool from a bool, a numpy scalar / one-element array or a one-element tensor."""
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):
        return bool(value.item())
    return bool(value)


class SuccessInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Normalise success reporting, reward type and (optionally) make the reward sparse.

    ``info["success"]`` is read from the wrapped env's ``info["success"]`` (else
    ``info["is_success"]``). When neither is present: ``compute(env)`` is called if given (e.g. to
    evaluate a ManiSkill task after ``reset``), else ``default`` is used; with ``default=None``
    the keys are left out (a plain gymnasium env that has no notion of success). ``reset_default``
    is the reset info's flag when only steps report one (goal-conditioned suites such as
    gymnasium-robotics report ``is_success`` in step infos only).
    ``sparse=True`` replaces the reward with ``1.0`` on success steps and ``0.0`` otherwise.

    >>> import gymnasium as gym
    >>> env = SuccessInfo(gym.make("CartPole-v1"), default=False, sparse=True)
    >>> _ = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(0)
    >>> type(reward).__name__, reward, info["is_success"]
    ('float', 0.0, False)
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        sparse: bool = False,
        default: bool | None = None,
        compute: Callable[[gym.Env], bool] | None = None,
        reset_default: bool | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, sparse=sparse, default=default, compute=compute, reset_default=reset_default
        )
        gym.Wrapper.__init__(self, env)
        self.sparse = bool(sparse)
        self.default = default
        self.compute = compute
        self.reset_default = reset_default

    def _success(self, info: dict[str, Any]) -> bool | None:
        if "success" in info:
            return _as_bool(info["success"])
        if "is_success" in info:
            return _as_bool(info["is_success"])
        if self.compute is not None:
            return bool(self.compute(self.env))
        return self.default

    def _fill(self, info: dict[str, Any]) -> bool | None:
        success = self._success(info)
        if success is not None:
            info["success"] = success
            info["is_success"] = success
        return success

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        if self._fill(info) is None and self.reset_default is not None:
            info["success"] = info["is_success"] = self.reset_default
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        success = self._fill(info)
        if self.sparse:
            if success is None:
                raise RuntimeError(
                    f"reward='sparse' needs a success signal, but {self.env.spec.id if self.env.spec else self.env} "
                    "reports neither info['success'] nor info['is_success']"
                )
            reward = 1.0 if success else 0.0
        return obs, _to_float(reward), _as_bool(terminated), _as_bool(truncated), info


def _to_float(value: SupportsFloat | np.ndarray) -> float:
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return float(value.item())
    return float(value)


def _resize(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2  # lazily: only the image modes of foreign envs need OpenCV

    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[..., :3]
    if frame.shape[:2] != hw:
        frame = cv2.resize(frame, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class RenderObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observe the env's ``render()`` frame, resized to ``size`` (``n`` or ``(height, width)``), as ``"rgb"``.

    With ``keep_state=True`` the observation is ``Dict(state=Box(float32), rgb=Box(uint8))``,
    the state being the wrapped (Box) observation flattened to float32. The wrapped env must
    have been made with ``render_mode="rgb_array"``.

    >>> import gymnasium as gym
    >>> import envs  # registers PointReach-v0, which renders without GL
    >>> env = RenderObservation(gym.make("PointReach-v0", render_mode="rgb_array"), size=32)
    >>> env.reset(seed=0)[0].shape
    (32, 32, 3)
    """

    def __init__(self, env: gym.Env, size: RenderSize = 64, keep_state: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size, keep_state=keep_state)
        gym.ObservationWrapper.__init__(self, env)
        if env.render_mode != "rgb_array":
            raise ValueError("RenderObservation needs an env made with render_mode='rgb_array'")
        self.size = image_hw(size)
        self.keep_state = bool(keep_state)
        rgb = spaces.Box(0, 255, (*self.size, 3), np.uint8)
        if keep_state:
            inner = env.observation_space
            if not isinstance(inner, spaces.Box):
                raise ValueError(
                    f"obs='state+rgb' needs a Box observation space to use as the state, got {inner}"
                )
            dim = int(np.prod(inner.shape))
            low = np.asarray(inner.low, np.float32).reshape(-1)
            high = np.asarray(inner.high, np.float32).reshape(-1)
            state = spaces.Box(low, high, (dim,), np.float32)
            self.observation_space = spaces.Dict({"state": state, "rgb": rgb})
        else:
            self.observation_space = rgb

    def observation(self, observation: Any) -> Any:
        rgb = _resize(self.env.render(), self.size)
        if not self.keep_state:
            return rgb
        return {"state": np.asarray(observation, np.float32).reshape(-1), "rgb": rgb}


class Float32State(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Cast a floating ``Box`` observation (float64, float16) to float32; leave others alone.

    >>> import gymnasium as gym
    >>> float64_env = gym.wrappers.DtypeObservation(gym.make("Pendulum-v1"), np.float64)  # as MuJoCo's
    >>> env = Float32State(float64_env)
    >>> env.observation_space.dtype, env.reset(seed=0)[0].dtype
    (dtype('float32'), dtype('float32'))
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        inner = env.observation_space
        if not needs_float32(inner):
            raise ValueError(f"Float32State needs a floating Box observation space that is not float32, got {inner}")
        self.observation_space = spaces.Box(
            np.asarray(inner.low, np.float32), np.asarray(inner.high, np.float32), inner.shape, np.float32
        )

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, np.float32)


def needs_float32(space: gym.Space) -> bool:
    """Whether ``space`` is a floating ``Box`` of a dtype other than float32.

    >>> needs_float32(spaces.Box(0, 1, (2,), np.float64)), needs_float32(spaces.Box(0, 255, (2,), np.uint8))
    (True, False)
    """
    return isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating) and space.dtype != np.float32


class RenderAtEpisodeEnd(gym.Wrapper):
    """Render the observation's images on an episode's last step only; before it they are zeros.

    For a reward computed once per episode on its final frame while the policy reads only the
    state: ``rendering(on)`` switches the wrapped env's image rendering (``envs.make`` passes the
    built-in and ManiSkill switches), on for the step that reaches ``episode_steps``. Episodes must
    run their full length: one that ends earlier raises ``RuntimeError`` (its final frame was not rendered).

    >>> import envs
    >>> env = envs.make("PointReach-v0", obs="state+rgb", ignore_terminations=True, max_episode_steps=3,
    ...                 render_at="episode-end")
    >>> obs, _ = env.reset(seed=0)
    >>> drawn = [bool(env.step(env.action_space.sample())[0]["rgb"].any()) for _ in range(3)]
    >>> bool(obs["rgb"].any()), drawn
    (False, [False, False, True])
    """

    def __init__(self, env: gym.Env, episode_steps: int, rendering: Callable[[bool], None]) -> None:
        super().__init__(env)
        if int(episode_steps) < 1:
            raise ValueError(f"episode_steps must be >= 1, got {episode_steps}")
        self.episode_steps = int(episode_steps)
        self.rendering = rendering
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._t = 0
        self.rendering(False)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self._t += 1
        self.rendering(self._t >= self.episode_steps)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and self._t < self.episode_steps:
            raise RuntimeError(f"the episode ended at step {self._t} of {self.episode_steps}: images rendered at "
                               "episode end need full-length episodes (ignore_terminations=True, no other end)")
        return obs, reward, terminated, truncated, info

