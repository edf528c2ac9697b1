"""Scripted end-effector experts for ManiSkill ``PickCube-v1`` and ``PushCube-v1``.

They drive ``control_mode="pd_ee_delta_pos"`` (action ``[dx, dy, dz, gripper]`` in ``[-1, 1]``;
``1`` is a 10 cm end-effector displacement in the robot base frame, whose axes are the world's
for the Panda; gripper ``1`` = open, ``-1`` = closed) with a small phase machine that reads
privileged poses from ``env.unwrapped`` (``agent.tcp.pose.p``, the cube and goal poses). The
phase restarts whenever the env's elapsed step counter is 0 (a new episode). ManiSkill's motion
planner (mplib) is not used: it segfaults under numpy 2.

Use them through :func:`envs.expert_policy`:

>>> import envs
>>> env = envs.make("PushCube-v1", seed=0)
>>> policy = envs.expert_policy(env)
>>> obs, info = env.reset()
>>> policy(obs).shape
(4,)
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.maniskill import DEFAULT_CONTROL_MODE

_MAX_DELTA = 0.1  # metres per unit action of pd_ee_delta_pos (Panda controller bounds)
OPEN, CLOSED = 1.0, -1.0


def _p(pose_holder: Any) -> np.ndarray:
    """Position of the first (only) sub-env as a float64 numpy vector."""
    return pose_holder.pose.p[0].detach().cpu().numpy().astype(np.float64)


def _move(tcp: np.ndarray, target: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    delta = np.clip(gain * (target - tcp) / _MAX_DELTA, -1.0, 1.0)
    return np.array([delta[0], delta[1], delta[2], gripper], dtype=np.float32)


class _Expert:
    """Base: detects new episodes and exposes the privileged positions."""

    def __init__(self, env: gym.Env) -> None:
        self.base = env.unwrapped
        mode = getattr(self.base, "control_mode", None)
        if mode != DEFAULT_CONTROL_MODE:
            raise ValueError(
                f"the scripted ManiSkill experts drive control_mode={DEFAULT_CONTROL_MODE!r}, "
                f"this env uses {mode!r}"
            )
        self.phase = "start"
        self.counter = 0

    def __call__(self, obs: Any) -> np.ndarray:
        if int(self.base.elapsed_steps.reshape(-1)[0]) == 0:
            self.phase, self.counter = "start", 0
        return self.act(_p(self.base.agent.tcp))

    def act(self, tcp: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PickCubeExpert(_Expert):
    """Reach above the cube, descend, close, carry the cube to the goal and hold still.

    >>> import envs
    >>> env = envs.make("PickCube-v1", seed=0)
    >>> policy = PickCubeExpert(env)
    >>> obs, _ = env.reset()
    >>> for _ in range(50):
    ...     obs, reward, terminated, truncated, info = env.step(policy(obs))
    ...     if terminated or truncated:
    ...         break
    >>> info["success"], policy.phase
    (True, 'carry')
    """

    HOVER = 0.06

    def act(self, tcp: np.ndarray) -> np.ndarray:
        cube, goal = _p(self.base.cube), _p(self.base.goal_site)
        if self.phase in ("start", "reach"):
            self.phase = "reach"
            target = cube + [0.0, 0.0, self.HOVER]
            if np.linalg.norm((target - tcp)[:2]) < 0.01 and abs(target[2] - tcp[2]) < 0.02:
                self.phase = "descend"
            return _move(tcp, target, OPEN)
        if self.phase == "descend":
            if np.linalg.norm((cube - tcp)[:2]) > 0.02:
                self.phase = "reach"
            elif np.linalg.norm(cube - tcp) < 0.01:
                self.phase, self.counter = "grasp", 0
            return _move(tcp, cube, OPEN)
        if self.phase == "grasp":
            self.counter += 1
            if self.counter >= 4:
                self.phase = "carry"
            return np.array([0.0, 0.0, 0.0, CLOSED], dtype=np.float32)
        # carry: move the cube (not the tcp) onto the goal; re-grasp if it slipped
        if not bool(self.base.agent.is_grasping(self.base.cube).reshape(-1)[0]):
            self.phase = "reach"
            return _move(tcp, tcp + [0.0, 0.0, 0.03], OPEN)
        return _move(tcp, tcp + (goal - cube), CLOSED)


class PushCubeExpert(_Expert):
    """Close the gripper, go behind the cube (-x side), lower, push it in +x onto the goal.

    >>> import envs
    >>> env = envs.make("PushCube-v1", seed=0)
    >>> policy = PushCubeExpert(env)
    >>> obs, _ = env.reset()
    >>> policy(obs)[3]  # the gripper stays closed
    np.float32(-1.0)
    """

    BEHIND = 0.05  # tcp distance behind the cube centre while pushing
    PUSH_Z = 0.03

    def act(self, tcp: np.ndarray) -> np.ndarray:
        cube, goal = _p(self.base.obj), _p(self.base.goal_region)
        behind = np.array([cube[0] - self.BEHIND, cube[1], self.PUSH_Z])
        if self.phase in ("start", "approach"):
            self.phase = "approach"
            target = behind + [-0.01, 0.0, 0.04]
            if np.linalg.norm(target - tcp) < 0.015:
                self.phase = "lower"
            return _move(tcp, target, CLOSED)
        if self.phase == "lower":
            target = behind + [-0.01, 0.0, 0.0]
            if np.linalg.norm(target - tcp) < 0.01:
                self.phase = "push"
            return _move(tcp, target, CLOSED)
        # push: drive the tcp so the cube centre heads for the goal centre, keeping in line
        target = np.array([goal[0] - self.BEHIND + 0.02, goal[1], self.PUSH_Z])
        target[1] = tcp[1] + (goal[1] - cube[1])
        return _move(tcp, target, CLOSED, gain=0.6)


_EXPERTS: dict[str, type[_Expert]] = {"PickCube-v1": PickCubeExpert, "PushCube-v1": PushCubeExpert}


def maniskill_expert(env: gym.Env, env_id: str) -> Callable[[Any], np.ndarray]:
    """The clean scripted expert for ManiSkill ``env_id`` acting in ``env``.

    :func:`envs.expert_policy` calls this and adds the noise model.

    >>> import envs
    >>> env = envs.make("PushCube-v1")
    >>> type(maniskill_expert(env, "PushCube-v1")).__name__
    'PushCubeExpert'
    """
    try:
        return _EXPERTS[env_id](env)
    except KeyError:
        raise ValueError(f"no scripted ManiSkill expert for {env_id!r}; have {sorted(_EXPERTS)}") from None
