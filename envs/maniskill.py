"""ManiSkill 3 tasks through :func:`envs.make` (imported only when a ManiSkill id is requested).

The env is built on the CPU simulator with one sub-env (``sim_backend="cpu"``, ``num_envs=1``),
wrapped in ManiSkill's ``CPUGymWrapper`` (numpy observations, unbatched float reward and bool
flags) and then in :class:`ManiSkillObservation`, which reshapes ManiSkill's observation into
RewardSwap's keys:

* ``obs="state"`` -> ManiSkill ``obs_mode="state"``: the flat privileged state vector;
* ``obs="rgb"`` -> ``obs_mode="rgb"``: the first sensor camera's ``(H, W, 3)`` uint8 image;
* ``obs="state+rgb"`` -> ``obs_mode="state+rgb"``: ``Dict(state, rgb)``. ManiSkill 3.0.1
  computes the same flat state vector as in ``"state"`` mode next to the camera image, in one
  render per step (measured here: the same speed as ``"rgb"``, both bound by the CPU renderer).

``reward="dense"`` maps to ManiSkill's ``reward_mode="normalized_dense"``, ``"sparse"`` to
``"sparse"`` (then forced to exactly ``1.0`` on success steps). The camera resolution is
``render_size``; ``control_mode`` defaults to ``"pd_ee_delta_pos"`` (what the scripted experts
drive); ``enhanced_determinism=True`` by default so every episode after a seeded first reset is
reproducible too. ManiSkill terminates on ground-truth success unless ``ignore_terminations=True``.

>>> import envs
>>> env = envs.make("PickCube-v1", obs="state", seed=0)
>>> env.observation_space.shape
(42,)
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.wrappers import SuccessInfo
from envs.options import gym_make
from envs.spaces import RenderSize, image_hw

_OBS_MODES = {"state": "state", "rgb": "rgb", "state+rgb": "state+rgb"}
_REWARD_MODES = {"dense": "normalized_dense", "sparse": "sparse"}
DEFAULT_CONTROL_MODE = "pd_ee_delta_pos"


class ManiSkillObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Map a ``CPUGymWrapper`` observation onto ``state`` / ``rgb`` / ``Dict(state, rgb)``.

    ``camera`` names the sensor whose image is used (default: the first one).

    >>> import envs
    >>> env = envs.make("PickCube-v1", obs="state+rgb", render_size=32)
    >>> sorted(env.observation_space.spaces)
    ['rgb', 'state']
    """

    def __init__(self, env: gym.Env, obs: str, camera: str | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, obs=obs, camera=camera)
        gym.ObservationWrapper.__init__(self, env)
        self.obs = obs
        if obs == "state":
            space = env.observation_space
            self.observation_space = spaces.Box(space.low, space.high, space.shape, np.float32)
            self.camera = None
            return
        sensors = env.observation_space["sensor_data"]
        self.camera = camera if camera is not None else next(iter(sensors.spaces))
        if self.camera not in sensors.spaces:
            raise ValueError(f"no camera {self.camera!r}; this task has {list(sensors.spaces)}")
        cam = sensors[self.camera]["rgb"]
        rgb = spaces.Box(0, 255, tuple(cam.shape), np.uint8)
        if obs == "rgb":
            self.observation_space = rgb
        else:
            st = env.observation_space["state"]
            state = spaces.Box(st.low, st.high, st.shape, np.float32)
            self.observation_space = spaces.Dict({"state": state, "rgb": rgb})

    def observation(self, observation: Any) -> Any:
        if self.obs == "state":
            return np.asarray(observation, dtype=np.float32)
        if self.obs == "state+rgb" and not isinstance(observation, dict):  # rendering switched off: state only
            return {"state": np.asarray(observation, dtype=np.float32),
                    "rgb": np.zeros(self.observation_space["rgb"].shape, np.uint8)}
        rgb = np.ascontiguousarray(observation["sensor_data"][self.camera]["rgb"], dtype=np.uint8)
        if self.obs == "rgb":
            return rgb
        return {"state": np.asarray(observation["state"], dtype=np.float32), "rgb": rgb}


#: Named camera placements for image observations: view -> (eye, target, vertical fov in radians).
#: ManiSkill's default cameras are framed for 128x128 and wide (fov 90 deg): at 64x64 a 4 cm cube
#: and the goal marker are ~3 pixels. ``"workspace"`` looks diagonally down at the table area where
#: the tabletop tasks place objects and goals (x, y in [-0.1, 0.1] m, goals up to 0.3 m high), so
#: both are ~8 pixels and their 3-D offset shows along two image axes. ``"side"`` looks across
#: the table surface from +y at x in [-0.1, 0.35] m, for tasks on the table (PushCube): the arm
#: comes in from -x, so it does not hide the cube it pushes, as it does from above or behind.
CAMERA_VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "workspace": ((0.35, 0.35, 0.4), (0.0, 0.0, 0.12), 1.0),
    "side": ((0.12, 0.42, 0.3), (0.12, 0.0, 0.0), 0.95),
}


def make_maniskill(
    env_id: str,
    *,
    obs: str,
    reward: str,
    render_size: RenderSize,
    ignore_terminations: bool,
    limit: dict[str, int],
    camera: str | None = None,
    show_goal: bool | None = None,
    camera_view: str | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Build a CPU ManiSkill env with RewardSwap's conventions (see the module docstring).

    ``kwargs`` go to ``gym.make`` and override the defaults (``control_mode``,
    ``sensor_configs``...). ``camera`` picks the sensor for image observations. ``show_goal``
    (default: on for image observations) makes goal markers that ManiSkill hides from its
    cameras (e.g. PickCube's goal sphere) visible, so success can be judged from pixels: a reward
    model on ``rgb`` cannot tell "cube at the goal" from "cube in the air" otherwise.
    ``camera_view`` (a key of :data:`CAMERA_VIEWS`, default: the task's own placement) moves every
    sensor camera; it is a name rather than a pose so recorded metadata and run configs stay JSON.
    Prefer :func:`envs.make`, which calls this for ManiSkill ids.

    >>> env = make_maniskill("PushCube-v1", obs="state", reward="sparse", render_size=64,
    ...                      ignore_terminations=True, limit={"max_episode_steps": 10})
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["success"], env.action_space.shape
    ((35,), False, (4,))
    """
    try:
        import mani_skill.envs  # noqa: F401  (registers the tasks)
        from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError(
            f"{env_id!r} is a ManiSkill task but ManiSkill cannot be imported ({exc}); "
            "install it with `pip install -e .[maniskill]`"
        ) from exc
    for key in ("obs_mode", "reward_mode", "sim_backend", "num_envs"):
        if key in kwargs:
            raise ValueError(f"{key!r} is set by envs.make (use obs=/reward=); do not pass it")
    height, width = image_hw(render_size)
    sensor_configs: dict[str, Any] = {"width": width, "height": height}
    if camera_view is not None:
        if camera_view not in CAMERA_VIEWS:
            raise ValueError(f"camera_view={camera_view!r} is not known; choose one of {sorted(CAMERA_VIEWS)}")
        from mani_skill.utils import sapien_utils

        eye, target, fov = CAMERA_VIEWS[camera_view]
        sensor_configs.update(pose=sapien_utils.look_at(eye, target), fov=fov)
    sensor_configs.update(kwargs.pop("sensor_configs", {}) or {})
    make_kwargs: dict[str, Any] = {
        "control_mode": DEFAULT_CONTROL_MODE,
        # Without it, resets that get no seed draw task layouts from torch's *global* RNG, so
        # "same seed => same trajectory" would hold for the first episode only.
        "enhanced_determinism": True,
        **kwargs,
        "obs_mode": _OBS_MODES[obs],
        "reward_mode": _REWARD_MODES[reward],
        "sim_backend": "cpu",
        "num_envs": 1,
        "sensor_configs": sensor_configs,
    }
    env = gym_make(env_id, kwargs, **limit, **make_kwargs)
    if show_goal if show_goal is not None else obs != "state":
        _show_hidden_goals(env.unwrapped)
    env = CPUGymWrapper(env, ignore_terminations=ignore_terminations)
    env = ManiSkillObservation(env, obs, camera=camera)
    return SuccessInfo(env, sparse=reward == "sparse", compute=_evaluate_success)


def _show_hidden_goals(base_env: Any) -> None:
    """Un-hide goal markers from the sensor cameras (they are hidden once, after scene load)."""
    hidden = getattr(base_env, "_hidden_objects", [])
    for obj in [o for o in hidden if "goal" in getattr(o, "name", "")]:
        hidden.remove(obj)
        obj.show_visual()


def _evaluate_success(env: gym.Env) -> bool:
    """Ground-truth success of the (single) ManiSkill sub-env, for infos that lack it."""
    info = env.unwrapped.evaluate()
    success = info.get("success", False)
    return bool(success.reshape(-1)[0].item()) if hasattr(success, "reshape") else bool(success)


def rendering_switch(env: gym.Env) -> Callable[[bool], None]:
    """``on -> None`` switching the sensor cameras of a ``state+rgb`` ManiSkill env: off, ManiSkill
    computes the state observation alone (the same vector) and skips the render."""
    base = env.unwrapped
    mode = base._obs_mode  # noqa: SLF001 - ManiSkill 3.0.1 reads it on every get_obs()

    def switch(on: bool) -> None:
        base._obs_mode = mode if on else "state"  # noqa: SLF001

    return switch

