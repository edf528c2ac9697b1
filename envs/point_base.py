"""Shared machinery of the built-in 2D point-mass tasks (``PointReach-v0``, ``PointKeyDoor-v0``).

A point mass lives in the square arena ``[-1, 1]^2``. The action is a bounded acceleration in
``Box(-1, 1, (2,))``; the velocity is damped each step and the position is clamped to the arena
(hitting a wall stops the motion along that axis). Subclasses add the task: targets, the state
vector, success, reward and what is drawn on the top-down image.

Observations are produced by the env itself, for speed, in one of three modes:

* ``"state"``: ``Box(float32, (D,))``;
* ``"rgb"``: ``Box(uint8, (H, W, 3))``, a top-down image drawn with numpy (no GL);
* ``"state+rgb"``: ``Dict(state=..., rgb=...)``.

>>> from envs.point_reach import PointReachEnv
>>> env = PointReachEnv(obs_mode="state+rgb", render_size=32)
>>> obs, info = env.reset(seed=0)
>>> obs["rgb"].shape, obs["state"].dtype, info["success"]
((32, 32, 3), dtype('float32'), False)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.spaces import RenderSize, image_hw, render_size_value

OBS_MODES: tuple[str, ...] = ("state", "rgb", "state+rgb")
REWARD_MODES: tuple[str, ...] = ("dense", "sparse")

#: Largest distance between two points of the arena (its diagonal).
ARENA_DIAGONAL = 2.0 * math.sqrt(2.0)

# Colours (RGB, uint8) shared by the built-in tasks.
BACKGROUND = (30, 30, 30)
AGENT_COLOUR = (230, 40, 40)


def _check_modes(obs_mode: str, reward_mode: str, render_size: RenderSize) -> None:
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
    image_hw(render_size)


class Canvas:
    """A tiny numpy rasteriser for filled disks on an image of the arena ``[-1, 1]^2``.

    The arena's ``+y`` points up in the image. Pixel centres are precomputed once so drawing a
    disk is one vectorised mask. ``width`` (default: ``size``) makes a non-square camera: the
    arena is stretched to fill it, as a wide-angle sensor would.

    >>> c = Canvas(16)
    >>> img = c.blank((0, 0, 0))
    >>> c.disk(img, 0.0, 0.0, 0.5, (255, 0, 0))
    >>> img.shape, bool(img[8, 8, 0] == 255), bool(img[0, 0, 0] == 0)
    ((16, 16, 3), True, True)
    """

    def __init__(self, size: int, width: int | None = None) -> None:
        self.size = int(size)
        self.width = self.size if width is None else int(width)
        self._xs = ((np.arange(self.width, dtype=np.float32) + 0.5) / self.width * 2.0 - 1.0)[None, :]  # column -> x
        self._ys = -((np.arange(self.size, dtype=np.float32) + 0.5) / self.size * 2.0 - 1.0)[:, None]  # row -> y (up)
        self._min_radius = 1.2 / min(self.size, self.width)  # so a tiny disk still covers about one pixel

    def blank(self, colour: Sequence[int]) -> np.ndarray:
        """A new ``(size, width, 3)`` uint8 image filled with ``colour``."""
        img = np.empty((self.size, self.width, 3), dtype=np.uint8)
        img[...] = colour
        return img

    def disk(self, img: np.ndarray, x: float, y: float, radius: float, colour: Sequence[int]) -> None:
        """Fill a disk of arena ``radius`` centred at arena point ``(x, y)`` in place."""
        r = max(radius, self._min_radius)
        mask = (self._xs - x) ** 2 + (self._ys - y) ** 2 <= r * r
        img[mask] = colour

    def ring(
        self, img: np.ndarray, x: float, y: float, radius: float, width: float, colour: Sequence[int]
    ) -> None:
        """Draw an annulus of outer ``radius`` and thickness ``width`` (arena units) in place."""
        d2 = (self._xs - x) ** 2 + (self._ys - y) ** 2
        inner = max(radius - max(width, 1.5 / min(self.size, self.width) * 2.0), 0.0)
        img[(d2 <= radius * radius) & (d2 >= inner * inner)] = colour


class PointMassEnv(gym.Env):
    """Base class: point-mass dynamics, observation modes, seeding and the success/reward contract.

    Subclasses implement :meth:`_reset_task`, :meth:`_task_state`, :meth:`_update_task`
    (returns ``(success, dense_reward, extra_info)``) and :meth:`_draw_task`.

    ``reward_mode="sparse"`` pays ``1.0`` on success steps and ``0.0`` otherwise. The episode
    terminates on success unless ``ignore_terminations``. The time limit lives in the
    ``TimeLimit`` wrapper added by ``gym.make`` / ``envs.make`` (registered
    ``max_episode_steps``).

    >>> from envs.point_reach import PointReachEnv  # a concrete subclass
    >>> env = PointReachEnv(ignore_terminations=True)
    >>> _ = env.reset(seed=0)
    >>> env.px, env.py = env.gx, env.gy  # teleport onto the goal
    >>> _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
    >>> info["success"], terminated
    (True, False)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    #: Velocity damping per step and acceleration gain (arena units per step^2 at |a|=1).
    DAMPING: ClassVar[float] = 0.8
    ACCEL: ClassVar[float] = 0.02
    #: Length of the task-specific part of the state vector.
    TASK_STATE_DIM: ClassVar[int] = 0

    def __init__(
        self,
        obs_mode: str = "state",
        reward_mode: str = "dense",
        render_size: RenderSize = 64,
        ignore_terminations: bool = False,
        render_mode: str | None = None,
    ) -> None:
        _check_modes(obs_mode, reward_mode, render_size)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.obs_mode = obs_mode
        self.reward_mode = reward_mode
        self.render_size = render_size_value(render_size)
        self._image_hw = image_hw(render_size)
        self.ignore_terminations = bool(ignore_terminations)
        self.render_mode = render_mode
        self._sparse = reward_mode == "sparse"

        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        state_dim = 4 + self.TASK_STATE_DIM
        # Every state entry (positions, velocities <= ACCEL / (1 - DAMPING), flags) lies in [-1, 1].
        state_space = spaces.Box(-1.0, 1.0, (state_dim,), np.float32)
        rgb_space = spaces.Box(0, 255, (*self._image_hw, 3), np.uint8)
        if obs_mode == "state":
            self.observation_space: spaces.Space = state_space
        elif obs_mode == "rgb":
            self.observation_space = rgb_space
        else:
            self.observation_space = spaces.Dict({"state": state_space, "rgb": rgb_space})
        self._want_state = obs_mode != "rgb"
        self._want_rgb = obs_mode != "state"
        #: False: observations carry a blank image instead of drawing one (``envs.RenderAtEpisodeEnd``)
        self.render_rgb = True
        self._canvas: Canvas | None = None

        self.px = self.py = self.vx = self.vy = 0.0
        self._success = False

    # ----------------------------------------------------------------- subclass hooks
    def _reset_task(self, rng: np.random.Generator) -> None:
        """Place the agent (``self.px``, ``self.py``) and the task's targets."""
        raise NotImplementedError

    def _task_state(self) -> list[float]:
        """Task part of the state vector (``TASK_STATE_DIM`` floats)."""
        raise NotImplementedError

    def _update_task(self) -> tuple[bool, float, dict[str, Any]]:
        """After a move: ``(success, dense_reward, extra_info)``. Also called on reset."""
        raise NotImplementedError

    def _draw_task(self, canvas: Canvas, img: np.ndarray) -> None:
        """Draw targets on ``img`` (the agent is drawn on top afterwards)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.vx = self.vy = 0.0
        self._reset_task(self.np_random)
        success, _, extra = self._update_task()
        self._success = success
        info = {"success": success, "is_success": success, **extra}
        return self._obs(), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        ax = float(action[0])
        ay = float(action[1])
        # Bounded acceleration; NaN fails every comparison and becomes 0 (no motion).
        ax = ax if -1.0 <= ax <= 1.0 else (1.0 if ax > 1.0 else (-1.0 if ax < -1.0 else 0.0))
        ay = ay if -1.0 <= ay <= 1.0 else (1.0 if ay > 1.0 else (-1.0 if ay < -1.0 else 0.0))
        vx = self.vx * self.DAMPING + ax * self.ACCEL
        vy = self.vy * self.DAMPING + ay * self.ACCEL
        px = self.px + vx
        py = self.py + vy
        if px > 1.0:
            px, vx = 1.0, 0.0
        elif px < -1.0:
            px, vx = -1.0, 0.0
        if py > 1.0:
            py, vy = 1.0, 0.0
        elif py < -1.0:
            py, vy = -1.0, 0.0
        self.px, self.py, self.vx, self.vy = px, py, vx, vy

        success, dense, extra = self._update_task()
        self._success = success
        reward = (1.0 if success else 0.0) if self._sparse else dense
        terminated = success and not self.ignore_terminations
        info = {"success": success, "is_success": success, **extra}
        return self._obs(), reward, terminated, False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The top-down image (``render_size``) when ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        return self.draw()

    # ----------------------------------------------------------------- helpers
    def state_vector(self) -> np.ndarray:
        """``[x, y, vx, vy, *task_state]`` as float32."""
        return np.array([self.px, self.py, self.vx, self.vy, *self._task_state()], dtype=np.float32)

    def draw(self) -> np.ndarray:
        """Draw the current scene as a ``(height, width, 3)`` uint8 image."""
        if self._canvas is None:
            self._canvas = Canvas(*self._image_hw)
        img = self._canvas.blank(BACKGROUND)
        self._draw_task(self._canvas, img)
        self._canvas.disk(img, self.px, self.py, self.AGENT_RADIUS, AGENT_COLOUR)
        return img

    #: Radius of the agent dot in the image (arena units; purely visual).
    AGENT_RADIUS: ClassVar[float] = 0.07

    def _obs(self) -> Any:
        if not self._want_rgb:
            return self.state_vector()
        rgb = self.draw() if self.render_rgb else np.zeros((*self._image_hw, 3), np.uint8)
        if not self._want_state:
            return rgb
        return {"state": self.state_vector(), "rgb": rgb}

    @staticmethod
    def _sample_far(
        rng: np.random.Generator, anchors: Sequence[tuple[float, float]], min_dist: float, bound: float
    ) -> tuple[float, float]:
        """A uniform point in ``[-bound, bound]^2`` at least ``min_dist`` from every anchor."""
        while True:
            x, y = (float(v) for v in rng.uniform(-bound, bound, size=2))
            if all(math.hypot(x - ax, y - ay) >= min_dist for ax, ay in anchors):
                return x, y
