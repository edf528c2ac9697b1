"""Helpers shared by the collectors tests (test_collectors*.py).

``StampedEnv``: every value it produces encodes where it came from (env index, episode, step),
so ``check_exact`` / ``check_buffer`` can check that every observation, action, reward, flag and
label landed exactly where the on-disk format says. ``_run_episodes`` drives a recorder through
whole episodes; ``_rlinf_file`` writes an RLinf-style pickled trajectory.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from collectors import load_trajectories

REPO = Path(__file__).resolve().parent.parent
SEED_BASE = 100  # env index = reset seed - SEED_BASE


def episode_length(idx: int, ep: int) -> int:
    return 3 + (idx + ep) % 3


def success_flag(idx: int, ep: int, t: int) -> bool:
    # A success frame in the middle (t == 2) catches off-by-one label alignment; episode 3
    # starts in success (the reset label must come from the reset info).
    return ((idx + ep) % 2 == 0 and t == 2) or (ep == 3 and t == 0)


def frame_value(idx: int, ep: int, t: int) -> int:
    return (idx * 50 + ep * 7 + t) % 256


class StampedEnv(gym.Env):
    """Every frame stamped with (env index, episode, step): obs = {state: [idx, ep, t, last action],
    rgb: 4x4x3 filled with frame_value}, so a recorded frame shows where it came from; see helpers.

    ``ep`` counts resets since the last seeded reset (so equal seeds give equal episodes).
    Even episodes terminate, odd ones truncate. ``info`` has ``success`` and ``stage``.
    """

    metadata = {"render_modes": []}

    def __init__(self, dict_obs: bool = True, success_key: str = "success") -> None:
        self.dict_obs = dict_obs
        self.success_key = success_key
        state = spaces.Box(-np.inf, np.inf, (4,), np.float32)
        rgb = spaces.Box(0, 255, (4, 4, 3), np.uint8)
        self.observation_space = spaces.Dict(state=state, rgb=rgb) if dict_obs else state
        self.action_space = spaces.Box(-1e9, 1e9, (1,), np.float32)
        self.idx, self.ep, self.t, self.last_action = 0, 0, 0, -1.0

    def _obs(self):  # type: ignore[no-untyped-def]
        state = np.array([self.idx, self.ep, self.t, self.last_action], np.float32)
        if not self.dict_obs:
            return state
        return {"state": state, "rgb": np.full((4, 4, 3), frame_value(self.idx, self.ep, self.t), np.uint8)}

    def _info(self) -> dict:
        return {self.success_key: success_flag(self.idx, self.ep, self.t), "stage": np.int64(self.t * 10 + self.ep)}

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        if seed is not None:
            self.idx, self.ep = seed - SEED_BASE, 0
        self.ep += 1
        self.t, self.last_action = 0, -1.0
        return self._obs(), self._info()

    def step(self, action):  # type: ignore[no-untyped-def]
        self.t += 1
        self.last_action = float(np.asarray(action).reshape(-1)[0])
        done = self.t >= episode_length(self.idx, self.ep)
        terminated = done and self.ep % 2 == 0
        truncated = done and not terminated
        reward = float(1000 * self.idx + 100 * self.ep + self.t)
        return self._obs(), reward, terminated, truncated, self._info()


def check_exact(traj, idx: int, ep: int) -> None:
    """Every field of one recorded StampedEnv episode is exactly what the env produced."""
    T = episode_length(idx, ep)
    assert len(traj) == T and traj.meta["length"] == T
    state = np.asarray(traj.obs["state"])
    assert state.shape == (T + 1, 4)
    np.testing.assert_array_equal(state[:, 0], idx)
    np.testing.assert_array_equal(state[:, 1], ep)
    np.testing.assert_array_equal(state[:, 2], np.arange(T + 1))
    # obs t+1 saw action t: actions are where they belong, one per transition
    np.testing.assert_array_equal(np.asarray(traj.actions)[:, 0], state[1:, 3])
    assert state[0, 3] == -1.0
    if "rgb" in traj.obs:
        rgb = np.asarray(traj.obs["rgb"])
        assert rgb.dtype == np.uint8 and rgb.shape == (T + 1, 4, 4, 3)
        np.testing.assert_array_equal(rgb[:, 0, 0, 0], [frame_value(idx, ep, t) for t in range(T + 1)])
    np.testing.assert_array_equal(traj.rewards, [1000 * idx + 100 * ep + t for t in range(1, T + 1)])
    labels = np.asarray(traj.labels)
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, [float(success_flag(idx, ep, t)) for t in range(T + 1)])
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert term.dtype == bool and not term[:-1].any() and not trunc[:-1].any()
    assert (term[-1], trunc[-1]) == (ep % 2 == 0, ep % 2 == 1)
    np.testing.assert_array_equal(traj.info["stage"], [t * 10 + ep for t in range(T + 1)])
    assert traj.success == bool(labels.max() >= 0.5)
    assert traj.split == ("positive" if traj.success else "negative")
    assert traj.path.parent.name == traj.split and traj.path.name == traj.id


def check_buffer(root: Path, n_envs: int, finished: int) -> None:
    """All ``finished`` episodes are on disk, each exact, none twice, ids all distinct."""
    trajs = load_trajectories(root)
    assert len(trajs) == finished
    assert len({t.id for t in trajs}) == finished
    seen = {}
    for t in trajs:
        idx, ep = int(t.obs["state"][0, 0]), int(t.obs["state"][0, 1])
        assert (idx, ep) not in seen
        seen[(idx, ep)] = t
        check_exact(t, idx, ep)
    for idx in range(n_envs):  # no episode lost in the middle: episodes 1..k of every env
        eps = sorted(ep for i, ep in seen if i == idx)
        assert eps == list(range(1, len(eps) + 1)), (idx, eps)
    assert not any((root / ".tmp").iterdir())


RECORDER_KW = {"info_keys": ("stage",)}


def _run_episodes(env, n: int, seed: int = SEED_BASE) -> None:  # type: ignore[no-untyped-def]
    env.reset(seed=seed)
    done = 0
    while done < n:
        if any(env.step(np.zeros(1, np.float32))[2:4]):
            done += 1
            env.reset()


def _rlinf_file(path: Path, labels: list[float], size: int = 8) -> np.ndarray:
    images = np.random.default_rng(0).random((len(labels), 3, size, size), dtype=np.float32)
    np.save(path, {"images": {"base_camera": images}, "labels": np.array(labels, np.float32)}, allow_pickle=True)
    return images
