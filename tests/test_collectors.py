"""collectors: TrajectoryRecorder, the on-disk format, load_trajectories, import_rlinf, CLI.

Most tests use ``CountingEnv``: every value it produces encodes where it came from (env index,
episode, step), so a test can check that every observation, action, reward, flag and label
landed exactly where the format says, across autoresets in every vector-env mode.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from collectors import (
    PickleRefusedError,
    TrajectoryFormatError,
    TrajectoryRecorder,
    TrajectoryWriteError,
    import_rlinf,
    load_trajectories,
)

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


class CountingEnv(gym.Env):
    """obs = {state: [idx, ep, t, last action], rgb: 4x4x3 filled with frame_value}; see helpers.

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
    """Every field of one recorded CountingEnv episode is exactly what the env produced."""
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


# ----------------------------------------------------------------------------- single env
@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_single_env_exact_content_and_routing(tmp_path: Path, async_write: bool | str) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write=async_write, **RECORDER_KW)
    assert env.write_mode == {False: "sync"}.get(async_write, async_write)
    obs, info = env.reset(seed=SEED_BASE + 2)
    assert isinstance(obs, dict) and info["stage"] == 1
    finished, a = 0, 0.0
    for _ in range(40):
        a += 1
        obs, r, term, trunc, info = env.step(np.array([a], np.float32))
        assert obs["state"][3] == a and isinstance(r, float)  # passes through unchanged
        if term or trunc:
            finished += 1
            env.reset()
    env.close()
    check_buffer(tmp_path, 1, finished)
    trajs = load_trajectories(tmp_path)
    assert {t.split for t in trajs} == {"positive", "negative"}
    assert len(load_trajectories(tmp_path, split="positive")) + len(load_trajectories(tmp_path / "negative")) == finished
    assert env.episodes_discarded == 1  # the last one, still running at close()
    meta = trajs[0].meta
    for key in ("env_id", "seed", "length", "success", "format_version", "fields"):
        assert key in meta
    assert meta["fields"]["obs.rgb"] == {"shape": [len(trajs[0]) + 1, 4, 4, 3], "dtype": "|u1"}


def test_success_once_routes_positive(tmp_path: Path) -> None:
    class OnceEnv(CountingEnv):
        def step(self, action):  # type: ignore[no-untyped-def]
            obs, r, term, trunc, info = super().step(action)
            return obs, r, term, trunc, {"success": False, "stage": 0, "success_once": term or trunc}

    env = TrajectoryRecorder(OnceEnv(), tmp_path)
    env.reset(seed=SEED_BASE + 1)  # idx 1, ep 1: no success frame
    while not any(env.step(np.zeros(1, np.float32))[2:4]):
        pass
    env.close()
    (traj,) = load_trajectories(tmp_path)
    assert traj.split == "positive" and traj.labels.max() == 0.0 and traj.meta["success_once"]


def test_interrupted_episode_is_discarded(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path)
    env.reset(seed=SEED_BASE)
    env.step(np.zeros(1, np.float32))
    env.reset()  # cut short: not written
    assert env.episodes_discarded == 1
    env.close()
    assert load_trajectories(tmp_path) == []


def test_keys_subset_and_plain_box(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path / "a", keys=["state"], info_keys=("stage",))
    _run_episodes(env, 1)
    env.close()
    (t,) = load_trajectories(tmp_path / "a")
    assert list(t.obs) == ["state"]
    check_exact(t, 0, 1)
    env = TrajectoryRecorder(CountingEnv(dict_obs=False), tmp_path / "b", info_keys=("stage",))
    _run_episodes(env, 1)
    env.close()
    (t,) = load_trajectories(tmp_path / "b")
    assert list(t.obs) == ["state"]  # a plain float Box is keyed "state" (envs.spaces)
    check_exact(t, 0, 1)


def test_check_env_gymnasium_and_sb3(tmp_path: Path) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(TrajectoryRecorder(CountingEnv(), tmp_path / "g"), skip_render_check=True)
        sb3_check_env(TrajectoryRecorder(CountingEnv(dict_obs=False), tmp_path / "s"))
        sb3_check_env(TrajectoryRecorder(CountingEnv(), tmp_path / "d"))


def test_long_episode_grows_buffers(tmp_path: Path) -> None:
    class Long(CountingEnv):
        def step(self, action):  # type: ignore[no-untyped-def]
            obs, r, _term, _trunc, info = super().step(action)
            return obs, r, False, self.t >= 600, info

    env = TrajectoryRecorder(Long(), tmp_path, async_write=True)
    assert env.write_mode == "process"  # growing replaces shared-memory segments mid-episode
    env.reset(seed=SEED_BASE)
    for _episode in range(2):  # the second episode reuses the grown buffers
        for i in range(600):
            env.step(np.array([i], np.float32))
        env.reset()
    env.close()
    trajs = load_trajectories(tmp_path)
    assert len(trajs) == 2
    for t in trajs:
        assert len(t) == 600 and t.obs["state"][600, 2] == 600 and t.actions[599, 0] == 599
        np.testing.assert_array_equal(t.obs["state"][:, 2], np.arange(601))


# ----------------------------------------------------------------------------- vector envs
def _drive_sb3(vec, steps: int) -> int:
    vec.seed(SEED_BASE)
    vec.reset()
    finished, counter = 0, 0.0
    for _ in range(steps):
        actions = np.arange(counter, counter + vec.num_envs, dtype=np.float32)[:, None]
        counter += vec.num_envs
        _obs, _r, dones, _infos = vec.step(actions)
        finished += int(dones.sum())
    vec.close()
    return finished


@pytest.mark.parametrize("vec_cls", ["dummy", "subproc"])
def test_sb3_make_vec_env(tmp_path: Path, vec_cls: str) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls, kw = (DummyVecEnv, {}) if vec_cls == "dummy" else (SubprocVecEnv, {"start_method": "fork"})
    vec = make_vec_env(CountingEnv, n_envs=2, wrapper_class=TrajectoryRecorder,
                       wrapper_kwargs={"out_dir": tmp_path, "async_write": True, **RECORDER_KW},
                       vec_env_cls=cls, vec_env_kwargs=kw)
    # SubprocVecEnv workers are daemonic (no multiprocessing children): the writer is still a process
    assert vec.get_attr("write_mode") == ["process", "process"]
    finished = _drive_sb3(vec, 60)
    assert finished > 20
    check_buffer(tmp_path, 2, finished)


def _gym_vec(tmp_path: Path, kind: str, mode: str, n: int = 2, **kw):  # type: ignore[no-untyped-def]
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    kw.setdefault("async_write", kind == "async")  # AsyncVectorEnv workers with writer processes
    fns = [lambda: TrajectoryRecorder(CountingEnv(), tmp_path, **RECORDER_KW, **kw) for _ in range(n)]
    cls = SyncVectorEnv if kind == "sync" else AsyncVectorEnv
    extra = {"context": "fork"} if kind == "async" else {}
    return cls(fns, autoreset_mode=AutoresetMode[mode], **extra)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode", ["NEXT_STEP", "SAME_STEP"])
def test_gymnasium_vector_autoreset_modes(tmp_path: Path, kind: str, mode: str) -> None:
    vec = _gym_vec(tmp_path, kind, mode)
    vec.reset(seed=SEED_BASE)
    finished, counter = 0, 0.0
    for _ in range(50):
        actions = np.arange(counter, counter + 2, dtype=np.float32)[:, None]
        counter += 2
        _obs, _r, term, trunc, _info = vec.step(actions)
        finished += int((term | trunc).sum())
    vec.close()
    assert finished > 15
    check_buffer(tmp_path, 2, finished)


def test_two_subproc_workers_concurrent_no_loss_no_collision(tmp_path: Path) -> None:
    """Two SubprocVecEnv workers write into one directory at once: nothing lost, no id clash."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = make_vec_env(CountingEnv, n_envs=2, wrapper_class=TrajectoryRecorder,
                       wrapper_kwargs={"out_dir": tmp_path, "async_write": True, **RECORDER_KW},
                       vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"})
    finished = _drive_sb3(vec, 1000)
    assert finished >= 450
    check_buffer(tmp_path, 2, finished)
    pids = {t.meta["pid"] for t in load_trajectories(tmp_path)}
    assert len(pids) == 2  # really two writer processes


# ----------------------------------------------------------------------------- caps
def _run_episodes(env, n: int, seed: int = SEED_BASE) -> None:  # type: ignore[no-untyped-def]
    env.reset(seed=seed)
    done = 0
    while done < n:
        if any(env.step(np.zeros(1, np.float32))[2:4]):
            done += 1
            env.reset()


class NumpyScalars(gym.Wrapper):
    """CountingEnv returning numpy scalars (reward, flags, success), as many envs do, on even
    steps; Python ones on odd steps (the recorder must not judge an episode by its first step)."""

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.env.unwrapped.t % 2:
            return obs, reward, terminated, truncated, info
        info = {**info, "success": np.bool_(info["success"])}
        return obs, np.float32(reward), np.bool_(terminated), np.bool_(truncated), info


@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_numpy_scalar_rewards_and_flags_are_stored_exactly(tmp_path: Path, async_write: bool) -> None:
    env = TrajectoryRecorder(NumpyScalars(CountingEnv()), tmp_path, info_keys=("stage",), async_write=async_write)
    _run_episodes(env, 4)
    env.close()
    check_buffer(tmp_path, 1, 4)
    for t in load_trajectories(tmp_path):
        assert type(t.meta["return"]) is float and type(t.meta["terminated"]) is bool


@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_write_stats_count_what_is_on_disk(tmp_path: Path, async_write: bool) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path, info_keys=("stage",), async_write=async_write)
    _run_episodes(env, 4)
    env.close()
    stats = env.stats
    on_disk = [np.load(f, allow_pickle=False) for f in tmp_path.rglob("*.npy")]
    trajectories = load_trajectories(tmp_path)
    assert sum(stats.written.values()) == len(trajectories) == 4 and len(stats.paths) == 4
    assert stats.frames == sum(len(t.labels) for t in trajectories)
    assert stats.bytes == sum(a.nbytes for a in on_disk)


@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_caps_hold_and_survive_restart(tmp_path: Path, async_write: bool) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path, max_positive=2, max_negative=3, async_write=async_write)
    _run_episodes(env, 20)
    env.close()
    assert len(load_trajectories(tmp_path, split="positive")) == 2
    assert len(load_trajectories(tmp_path, split="negative")) == 3
    assert env.full
    # a restart counts what exists on disk
    env = TrajectoryRecorder(CountingEnv(), tmp_path, max_positive=2, max_negative=4, async_write=async_write)
    assert not env.full
    _run_episodes(env, 20)
    env.close()
    assert len(load_trajectories(tmp_path, split="positive")) == 2
    assert len(load_trajectories(tmp_path, split="negative")) == 4


def test_bad_caps_and_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_positive"):
        TrajectoryRecorder(CountingEnv(), tmp_path, max_positive=-1)
    with pytest.raises(ValueError, match="async_write must be False, True, 'sync', 'thread' or 'process'"):
        TrajectoryRecorder(CountingEnv(), tmp_path, async_write="yes")
    with pytest.raises(ValueError, match="observation keys"):
        TrajectoryRecorder(CountingEnv(), tmp_path, keys=["depth"])

    class TupleActions(CountingEnv):
        action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))

    env = TupleActions()
    env.action_space = TupleActions.action_space
    with pytest.raises(TypeError, match="fixed shape"):
        TrajectoryRecorder(env, tmp_path)


# ----------------------------------------------------------------------------- errors
def test_missing_success_key_raises_listing_keys(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(success_key="is_success"), tmp_path)
    env.reset(seed=SEED_BASE)
    with pytest.raises(KeyError, match=r"'success'.*info keys are \['is_success', 'stage'\]"):
        env.step(np.zeros(1, np.float32))
    env = TrajectoryRecorder(CountingEnv(), tmp_path, info_keys=("door_open",))
    env.reset(seed=SEED_BASE)
    with pytest.raises(KeyError, match="door_open"):
        env.step(np.zeros(1, np.float32))


@pytest.mark.parametrize("bad", [np.array([True, False]), None, "yes"])
def test_bad_success_value_raises_at_its_step_and_discards_the_episode(tmp_path: Path, bad: Any) -> None:
    class BadFlagOnce(gym.Wrapper):  # at the first episode's second step
        armed = True

        def step(self, action):  # type: ignore[no-untyped-def]
            obs, reward, terminated, truncated, info = self.env.step(action)
            if self.armed and self.env.unwrapped.t == 2:
                self.armed, info = False, {**info, "success": bad}
            return obs, reward, terminated, truncated, info

    env = TrajectoryRecorder(BadFlagOnce(CountingEnv()), tmp_path, async_write="process")
    env.reset(seed=SEED_BASE)
    env.step(np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"info\['success'\] = .* is not a success flag"):
        env.step(np.zeros(1, np.float32))
    assert env.episodes_discarded == 1
    env.reset(seed=SEED_BASE + 1)  # the next episode records as usual
    while not any(env.step(np.zeros(1, np.float32))[2:4]):
        pass
    env.close()
    assert len(load_trajectories(tmp_path)) == 1 and env.episodes_discarded == 1


@pytest.mark.parametrize("async_write", [False, "thread"])  # the process path: test_process_writer_*
def test_failed_write_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                async_write: bool) -> None:
    import collectors.writer as writer

    calls = {"n": 0}
    real = writer._write_npy

    def failing(path, arr, *, fsync=False):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(path, arr, fsync=fsync)

    monkeypatch.setattr(writer, "_write_npy", failing)
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write=async_write)
    env.reset(seed=SEED_BASE)
    with pytest.raises(TrajectoryWriteError, match="disk full.*no partial trajectory"):
        for _ in range(4):
            env.step(np.zeros(1, np.float32))
        env.close()  # async: the writer thread's error surfaces here
    assert load_trajectories(tmp_path) == []
    assert not any((tmp_path / ".tmp").iterdir())


def test_collect_summary_counts_what_was_written_before_a_disk_full_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the summary said 0 written when 8 were.
    import collectors.writer as writer
    from agents.cli import main

    calls = {"n": 0}
    real = writer._write_npy
    files_per_trajectory = 6  # about: the failure comes after a few trajectories

    def failing(path, arr, *, fsync=False):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 3 * files_per_trajectory:
            raise OSError(28, "No space left on device")
        return real(path, arr, fsync=fsync)

    monkeypatch.setattr(writer, "_write_npy", failing)
    code = main(["collect", "--env", "PointReach-v0", "--episodes", "6", "--out", str(tmp_path / "buf"), "--sync-write",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "No space left on device" in captured.err
    on_disk = len(load_trajectories(tmp_path / "buf"))
    summary = re.search(r"(\d+) positive, (\d+) negative trajectories", captured.out)
    assert on_disk >= 2 and summary is not None and int(summary[1]) + int(summary[2]) == on_disk


def test_loader_errors_name_path_and_problem(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path)
    _run_episodes(env, 4)
    env.close()
    trajs = load_trajectories(tmp_path)
    assert len(trajs) == 4
    missing, short, bad_meta, newer = (t.path for t in trajs)
    (missing / "labels.npy").unlink()
    np.save(short / "rewards.npy", np.zeros(1))
    (bad_meta / "meta.json").write_text("{not json")
    meta = json.loads((newer / "meta.json").read_text())
    meta["format_version"] = 99
    (newer / "meta.json").write_text(json.dumps(meta))
    for path, pattern in ((missing, "missing file labels.npy"), (short, "length mismatch: rewards.npy"),
                          (bad_meta, "unreadable meta.json"), (newer, "format_version 99")):
        with pytest.raises(TrajectoryFormatError, match=pattern) as err:
            load_trajectories(path)
        assert str(path) in str(err.value)
    with pytest.raises(TrajectoryFormatError):
        load_trajectories(tmp_path)
    with pytest.warns(UserWarning, match="skipping"):
        assert load_trajectories(tmp_path, skip_bad=True) == []
    with pytest.raises(FileNotFoundError):
        load_trajectories(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        load_trajectories(tmp_path, split="both")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a trajectory buffer"):
        load_trajectories(tmp_path / "other")
    # a pickle smuggled in is refused, not loaded
    np.save(trajs[0].path / "labels.npy", np.array([{"a": 1}] * (len(trajs[0]) + 1), dtype=object))
    with pytest.raises(TrajectoryFormatError):
        load_trajectories(trajs[0].path)


def test_loader_ignores_temp_dirs_and_reads_lazily(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path)
    _run_episodes(env, 2)
    env.close()
    (tmp_path / ".tmp" / "999999-partial").mkdir()
    (tmp_path / ".tmp" / "999999-partial" / "obs.rgb.npy").write_bytes(b"junk")
    trajs = load_trajectories(tmp_path)
    assert len(trajs) == 2
    assert isinstance(trajs[0].obs["rgb"], np.memmap)
    assert not trajs[0].obs["rgb"].flags.writeable


def test_killed_writer_leaves_no_partial_trajectory(tmp_path: Path) -> None:
    """SIGKILL a process while it writes big trajectories: the loader sees only complete ones."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from collectors.writer import write_trajectory, new_trajectory_id
        T = 400
        rng = np.random.default_rng(0)
        big = rng.integers(0, 255, (T + 1, 96, 96, 3), dtype=np.uint8)
        fields = {{"obs.rgb": big, "actions": np.zeros((T, 2), np.float32), "rewards": np.arange(T, dtype=float),
                  "labels": np.zeros(T + 1, np.float32), "terminated": np.zeros(T, bool),
                  "truncated": np.zeros(T, bool)}}
        print("ready", flush=True)
        for i in range(10**6):
            write_trajectory({str(tmp_path)!r}, "negative", new_trajectory_id(), fields, {{"i": i, "success": False}})
    """)
    kills = 0
    for delay in (0.35, 0.6, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    trajs = load_trajectories(tmp_path)  # raises if any visible trajectory were partial
    assert len(trajs) >= kills
    for t in trajs:
        assert t.obs["rgb"].shape == (401, 96, 96, 3)
        assert int(np.asarray(t.obs["rgb"][-1]).sum()) > 0 and t.rewards[-1] == 399
    # Killed mid-write, a writer leaves its temp dir (invisible to the loader); a new recorder
    # removes temp dirs whose writer process is gone.
    TrajectoryRecorder(CountingEnv(), tmp_path).close()
    assert not any((tmp_path / ".tmp").iterdir())


# ----------------------------------------------------------------------------- writer process
def _memfd_use() -> tuple[int, int]:
    """(mappings, open descriptors) of the process writer's shared memory (frames and progress word)."""
    with open("/proc/self/maps") as f:
        maps = sum("memfd:rewardswap-" in line for line in f)
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += "memfd:rewardswap-" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            pass
    return maps, fds


def _exited(pid: int, timeout: float = 30.0) -> bool:
    """True once ``pid`` is gone or a zombie (an orphan may wait for init to reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("blocker", [".tmp", "negative"])
def test_process_writer_failed_write_raises_and_leaves_nothing(tmp_path: Path, blocker: str) -> None:
    """A write that fails in the writer process (at the first mkdir, or at the final rename) is
    raised here as TrajectoryWriteError; nothing partial is left; the recorder keeps working."""
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write="process", **RECORDER_KW)
    path = tmp_path / blocker
    path.rmdir()
    path.write_text("a file where a directory should be")
    env.reset(seed=SEED_BASE)  # idx 0, episode 1: 4 steps, negative
    for _ in range(4):
        env.step(np.zeros(1, np.float32))
    with pytest.raises(TrajectoryWriteError, match=r"could not write trajectory \S+ to .*NotADirectoryError"
                                                   r".*no partial trajectory was left"):
        env.flush()
    path.unlink()
    assert load_trajectories(tmp_path) == []
    assert blocker == ".tmp" or not any((tmp_path / ".tmp").iterdir())
    path.mkdir()
    _run_episodes(env, 1, seed=SEED_BASE + 1)  # the writer process is still there and writes again
    env.close()
    assert env.write_mode == "process"
    (t,) = load_trajectories(tmp_path)
    check_exact(t, 1, 1)


def test_process_writer_meta_with_numpy_values(tmp_path: Path) -> None:
    """meta travels to the writer process as builtin types; numpy values and paths in it are
    stored as meta.json always stored them (numbers, strings)."""
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write="process",
                             metadata={"noise": np.float32(0.5), "policy": tmp_path / "p.zip", "n": np.int64(3)})
    env.reset(seed=SEED_BASE)
    while not any(env.step(np.zeros(1, np.float32))[2:4]):
        pass
    env.close()
    (t,) = load_trajectories(tmp_path)
    assert (t.meta["noise"], t.meta["policy"], t.meta["n"], t.meta["seed"]) == (0.5, str(tmp_path / "p.zip"), 3, SEED_BASE)


def test_process_writer_frees_shared_memory_on_close_and_gc(tmp_path: Path) -> None:
    base = _memfd_use()
    shm_before = set(os.listdir("/dev/shm"))
    env = TrajectoryRecorder(CountingEnv(), tmp_path / "a", async_write="process")
    pid = env._writer.pid
    _run_episodes(env, 3)
    env.flush()
    maps, fds = _memfd_use()
    assert maps > base[0] and fds >= base[1]  # the buffers really are the shared segments we count
    with open(f"/proc/{pid}/maps") as f:
        assert "memfd:rewardswap-frames" in f.read()  # ... and the writer maps them too
    env.close()
    assert _memfd_use() == base and _exited(pid)
    assert len(load_trajectories(tmp_path / "a")) == 3

    # Never closed, only dropped: the memory goes, and the writer still writes what it was handed.
    env = TrajectoryRecorder(CountingEnv(), tmp_path / "b", async_write="process")
    pid = env._writer.pid
    _run_episodes(env, 3)
    del env
    import gc

    gc.collect()
    assert _memfd_use() == base and _exited(pid)
    assert len(load_trajectories(tmp_path / "b")) == 3
    assert not any((tmp_path / "b" / ".tmp").iterdir())
    # memfd memory never has a name: nothing new under /dev/shm with our name on it
    assert not [n for n in set(os.listdir("/dev/shm")) - shm_before if "rewardswap" in n]


_BIG_EPISODES = textwrap.dedent("""
    import sys, numpy as np, gymnasium as gym
    from gymnasium import spaces
    sys.path.insert(0, {repo!r})
    from collectors import TrajectoryRecorder

    class Big(gym.Env):
        observation_space = spaces.Box(0, 255, (32, 32, 3), np.uint8)
        action_space = spaces.Box(-1, 1, (2,), np.float32)
        def reset(self, *, seed=None, options=None):
            self.t = 0
            return self._obs(), {{"success": False}}
        def _obs(self):
            return np.full((32, 32, 3), self.t % 251, np.uint8)
        def step(self, action):
            self.t += 1
            return self._obs(), float(self.t), False, self.t >= 300, {{"success": False}}

    env = TrajectoryRecorder(Big(), {root!r}, async_write="process")
    print(env._writer.pid, flush=True)
    env.reset()
    while True:
        if env.step(np.zeros(2, np.float32))[3]:
            env.reset()
""")


def test_process_writer_parent_killed_mid_write(tmp_path: Path) -> None:
    """SIGKILL the recording process while episodes are being written: its writer process writes
    every episode it was handed, then exits (no temp dir left); with the writer killed too, only
    complete trajectories are visible and a new recorder clears the dead writer's temp dir."""
    script = _BIG_EPISODES.format(repo=str(REPO), root=str(tmp_path))
    written = 0
    for kill_writer in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        writer_pid = int(proc.stdout.readline())
        # Kill once episodes are flowing (a fixed sleep failed on a loaded machine: none had finished).
        deadline = time.monotonic() + 120
        while len(load_trajectories(tmp_path)) <= written and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        if kill_writer:
            os.kill(writer_pid, signal.SIGKILL)
        proc.wait()
        assert _exited(writer_pid)
        trajs = load_trajectories(tmp_path)  # raises if any visible trajectory were partial
        assert len(trajs) > written
        written = len(trajs)
        if not kill_writer:
            assert not any((tmp_path / ".tmp").iterdir())
    for t in trajs:
        assert len(t) == 300 and t.rewards[-1] == 300
        np.testing.assert_array_equal(t.obs["rgb"][:, 0, 0, 0], np.arange(301) % 251)
    TrajectoryRecorder(CountingEnv(), tmp_path).close()
    assert not any((tmp_path / ".tmp").iterdir())


def test_process_writer_killed_falls_back_and_loses_nothing(tmp_path: Path) -> None:
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write="process", **RECORDER_KW)
    env.reset(seed=SEED_BASE)
    finished, a = 0, 0.0
    with pytest.warns(RuntimeWarning, match=r"writer process \(pid \d+\) exited .* on a thread"):
        for i in range(80):
            if i == 30:
                os.kill(env._writer.pid, signal.SIGKILL)
            a += 1
            _obs, _r, term, trunc, _info = env.step(np.array([a], np.float32))
            if term or trunc:
                finished += 1
                env.reset()
        env.close()
    assert env.write_mode == "thread"
    check_buffer(tmp_path, 1, finished)


def test_process_writer_polls_only_while_busy(tmp_path: Path) -> None:
    """Between episodes the writer process checks its socket without waiting on it (so sending
    does not pay for waking it), but once idle it blocks: it must not wake up ~2,000 times a
    second for a recorder that has nothing to write."""
    from collectors.process_writer import IDLE_BLOCK_AFTER_S

    def wakeups(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)

    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write="process")
    pid = env._writer.pid
    _run_episodes(env, 2)
    env.flush()
    time.sleep(IDLE_BLOCK_AFTER_S + 0.2)  # idle long enough to block
    before = wakeups(pid)
    time.sleep(0.5)
    idle = wakeups(pid) - before
    _run_episodes(env, 1, seed=SEED_BASE + 1)  # and a blocked writer still wakes for new work
    env.close()
    assert idle < 20, f"the idle writer process woke {idle} times in 0.5 s"
    assert len(load_trajectories(tmp_path)) == 3


def test_writer_process_reports_concurrent_writes_in_submission_order() -> None:
    """The writer process writes on several threads but counts progress as a prefix of the
    jobs sent: a later job that finishes first is reported only after the earlier one."""
    import threading

    from collectors.process_writer import _InOrderWrites

    reported: list[int] = []
    first_may_finish = threading.Event()

    def write(job: int) -> dict:
        if job == 0:
            assert first_may_finish.wait(10)
        return {"job": job, "status": "ok"}

    writes = _InOrderWrites(2, lambda ack: reported.append(ack["job"]))
    writes.submit(write, 0)
    writes.submit(write, 1)
    deadline = time.monotonic() + 10
    while not writes._pending[1].done() and time.monotonic() < deadline:
        time.sleep(0.001)
    writes.report_finished()
    assert reported == [] and writes.busy  # job 1 is done, job 0 is not: nothing counted yet
    first_may_finish.set()
    writes.close()
    assert reported == [0, 1] and not writes.busy


def test_process_writer_refuses_a_forked_copy(tmp_path: Path) -> None:
    """A recorder used in a fork of the process that made it says what to do instead; the
    original keeps working (the child only closed its copy of the socket)."""
    env = TrajectoryRecorder(CountingEnv(), tmp_path, async_write="process")
    _run_episodes(env, 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        try:
            env.flush()
        except RuntimeError as exc:
            os._exit(0 if "forked copy" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _run_episodes(env, 1, seed=SEED_BASE + 1)
    env.close()
    assert len(load_trajectories(tmp_path)) == 2


# ----------------------------------------------------------------------------- RLinf import
def _rlinf_file(path: Path, labels: list[float], size: int = 8) -> np.ndarray:
    images = np.random.default_rng(0).random((len(labels), 3, size, size), dtype=np.float32)
    np.save(path, {"images": {"base_camera": images}, "labels": np.array(labels, np.float32)}, allow_pickle=True)
    return images


def test_import_rlinf(tmp_path: Path) -> None:
    src = tmp_path / "reward_data"
    (src / "positive").mkdir(parents=True)
    (src / "negative").mkdir()
    images = _rlinf_file(src / "positive" / "000000.npy", [0, 0, 1])
    _rlinf_file(src / "negative" / "000000.npy", [0, 0, 0, 0])
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
        import_rlinf(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    written = import_rlinf(src, tmp_path / "out", allow_pickle=True, rename={"base_camera": "rgb"})
    assert len(written) == 2
    assert import_rlinf(src, tmp_path / "out", allow_pickle=True, rename={"base_camera": "rgb"}) == []
    (pos,) = load_trajectories(tmp_path / "out", split="positive")
    assert pos.obs["rgb"].dtype == np.uint8 and pos.obs["rgb"].shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(pos.obs["rgb"], np.rint(images.transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    np.testing.assert_array_equal(pos.labels, [0, 0, 1])
    assert len(pos) == 2 and pos.actions.shape == (2, 0) and np.isnan(pos.rewards).all()
    assert pos.meta["source"] == "rlinf"
    (neg,) = load_trajectories(tmp_path / "out", split="negative")
    assert not neg.success and len(neg) == 3
    # bad inputs
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an RLinf trajectory"):
        import_rlinf(tmp_path / "plain.npy", tmp_path / "out2", allow_pickle=True)
    np.save(tmp_path / "hwc.npy", {"images": {"c": np.zeros((2, 8, 8, 3), np.float32)}, "labels": np.zeros(2)},
            allow_pickle=True)
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        import_rlinf(tmp_path / "hwc.npy", tmp_path / "out2", allow_pickle=True)
    np.save(tmp_path / "nolabels.npy", {"images": {}}, allow_pickle=True)
    with pytest.raises(ValueError, match="'images' and 'labels'"):
        import_rlinf(tmp_path / "nolabels.npy", tmp_path / "out2", allow_pickle=True)


# ----------------------------------------------------------------------------- CLI
def test_cli_collect_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("envs")
    from agents.cli import main

    out = tmp_path / "buf"
    code = main(["collect", "--env", "PointReach-v0", "--policy", "expert", "--episodes", "4", "--out", str(out),
                 "--obs", "state+rgb", "--noise", "0.3", "--seed", "3", "--render-size", "32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    trajs = load_trajectories(out)
    assert len(trajs) == 4
    assert {t.meta["seed"] for t in trajs} == {3, 4, 5, 6}
    assert trajs[0].obs["rgb"].shape[1:] == (32, 32, 3) and trajs[0].meta["env_id"] == "PointReach-v0"
    assert trajs[0].meta["policy"] == "expert"
    summary = captured.out
    for word in ("positive", "negative", "frames", "bytes", "steps/s"):
        assert word in summary
    assert main(["collect", "--out", str(out)]) == 2  # --env and --episodes missing
    assert "--env is required" in capsys.readouterr().err


def test_cli_import_rlinf_refuses_pickle_without_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from collectors.cli import add_arguments, run
    import argparse

    _rlinf_file(tmp_path / "000001.npy", [0, 1])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--import-rlinf", str(tmp_path / "000001.npy"), "--out", str(tmp_path / "o")])) == 2
    assert "allow_pickle" in capsys.readouterr().err
    assert run(parser.parse_args(["--import-rlinf", str(tmp_path / "000001.npy"), "--out", str(tmp_path / "o"),
                                  "--allow-pickle"])) == 0
    assert len(load_trajectories(tmp_path / "o")) == 1


def test_cli_collect_with_a_saved_sb3_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import envs
    from stable_baselines3 import PPO

    from agents.cli import main

    agent = PPO("MlpPolicy", envs.make("PointReach-v0", seed=0), n_steps=64, batch_size=64, seed=0, device="cpu")
    agent.save(tmp_path / "policy.zip")
    out = tmp_path / "buf"
    code = main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "policy.zip"), "--episodes", "2",
                 "--out", str(out), "--seed", "0", "--trust-policy"])
    assert code == 0, capsys.readouterr().err
    trajs = load_trajectories(out)
    assert len(trajs) == 2 and trajs[0].meta["policy"] == str(tmp_path / "policy.zip")
    # The recorded actions are the saved policy's deterministic actions for the recorded observations.
    expected, _ = agent.predict(np.asarray(trajs[0].obs["state"][:-1]), deterministic=True)
    np.testing.assert_allclose(np.asarray(trajs[0].actions), expected, atol=1e-5)
    assert main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "missing.zip"), "--episodes", "1",
                 "--out", str(out), "--trust-policy"]) == 2
    assert "missing.zip" in capsys.readouterr().err


def test_cli_collect_refuses_an_sb3_zip_without_trust_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A zip crafted like an SB3 save whose pickled entry runs code on load: nothing is unpickled
    # unless the user says they trust the file.
    import base64
    import pickle
    import zipfile

    from agents.cli import main

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>",
                             ":serialized:": base64.b64encode(pickle.dumps(Payload())).decode()}}
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("data", json.dumps(data))
    code = main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "evil.zip"), "--episodes", "1",
                 "--out", str(tmp_path / "buf")])
    assert code == 2 and "--trust-policy" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "buf").exists()


def test_collected_write_errors_surface_as_one_naming_how_many_followed():
    from collectors.writer import TrajectoryWriteError, take_first_error

    cause = OSError(28, "No space left on device")
    first = TrajectoryWriteError("writing positive/a failed")
    first.__cause__ = cause
    errors: list[BaseException] = [first, TrajectoryWriteError("b"), TrajectoryWriteError("c")]
    combined = take_first_error(errors)
    assert errors == []
    assert isinstance(combined, TrajectoryWriteError) and combined.__cause__ is cause
    assert str(combined) == "writing positive/a failed (and 2 more failed writes)"
    other = ValueError("bad meta")
    assert take_first_error([other, TrajectoryWriteError("x")]) is other
    assert take_first_error([first]) is first
