"""collectors: TrajectoryRecorder, the on-disk format, load_trajectories, import_rlinf.

Recording in single and vector envs (every autoreset mode), caps, numpy scalars, recorder and
loader errors, and the RLinf import. Most tests use ``StampedEnv`` (tests/collector_helpers.py):
every value it produces encodes where it came from (env index, episode, step), so a test can
check that every observation, action, reward, flag and label landed exactly where the format
says, across autoresets in every vector-env mode. The writer back-ends, the writer process and
crash safety: test_collectors_writers.py; the ``rewardswap collect`` command: test_collectors_cli.py.
"""

from __future__ import annotations

import json
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
    import_rlinf,
    load_trajectories,
)
from tests.collector_helpers import (
    RECORDER_KW,
    SEED_BASE,
    StampedEnv,
    _rlinf_file,
    _run_episodes,
    check_buffer,
    check_exact,
)

# ----------------------------------------------------------------------------- single env
@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_single_env_exact_content_and_routing(tmp_path: Path, async_write: bool | str) -> None:
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write=async_write, **RECORDER_KW)
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
    class OnceEnv(StampedEnv):
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path)
    env.reset(seed=SEED_BASE)
    env.step(np.zeros(1, np.float32))
    env.reset()  # cut short: not written
    assert env.episodes_discarded == 1
    env.close()
    assert load_trajectories(tmp_path) == []


def test_keys_subset_and_plain_box(tmp_path: Path) -> None:
    env = TrajectoryRecorder(StampedEnv(), tmp_path / "a", keys=["state"], info_keys=("stage",))
    _run_episodes(env, 1)
    env.close()
    (t,) = load_trajectories(tmp_path / "a")
    assert list(t.obs) == ["state"]
    check_exact(t, 0, 1)
    env = TrajectoryRecorder(StampedEnv(dict_obs=False), tmp_path / "b", info_keys=("stage",))
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
        gym_check_env(TrajectoryRecorder(StampedEnv(), tmp_path / "g"), skip_render_check=True)
        sb3_check_env(TrajectoryRecorder(StampedEnv(dict_obs=False), tmp_path / "s"))
        sb3_check_env(TrajectoryRecorder(StampedEnv(), tmp_path / "d"))


def test_long_episode_grows_buffers(tmp_path: Path) -> None:
    class Long(StampedEnv):
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
    vec = make_vec_env(StampedEnv, n_envs=2, wrapper_class=TrajectoryRecorder,
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
    fns = [lambda: TrajectoryRecorder(StampedEnv(), tmp_path, **RECORDER_KW, **kw) for _ in range(n)]
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

    vec = make_vec_env(StampedEnv, n_envs=2, wrapper_class=TrajectoryRecorder,
                       wrapper_kwargs={"out_dir": tmp_path, "async_write": True, **RECORDER_KW},
                       vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"})
    finished = _drive_sb3(vec, 1000)
    assert finished >= 450
    check_buffer(tmp_path, 2, finished)
    pids = {t.meta["pid"] for t in load_trajectories(tmp_path)}
    assert len(pids) == 2  # really two writer processes


# ----------------------------------------------------------------------------- caps
class NumpyScalars(gym.Wrapper):
    """StampedEnv returning numpy scalars (reward, flags, success), as many envs do, on even
    steps; Python ones on odd steps (the recorder must not judge an episode by its first step)."""

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.env.unwrapped.t % 2:
            return obs, reward, terminated, truncated, info
        info = {**info, "success": np.bool_(info["success"])}
        return obs, np.float32(reward), np.bool_(terminated), np.bool_(truncated), info


@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_numpy_scalar_rewards_and_flags_are_stored_exactly(tmp_path: Path, async_write: bool) -> None:
    env = TrajectoryRecorder(NumpyScalars(StampedEnv()), tmp_path, info_keys=("stage",), async_write=async_write)
    _run_episodes(env, 4)
    env.close()
    check_buffer(tmp_path, 1, 4)
    for t in load_trajectories(tmp_path):
        assert type(t.meta["return"]) is float and type(t.meta["terminated"]) is bool


@pytest.mark.parametrize("async_write", [False, "thread", "process"])
def test_write_stats_count_what_is_on_disk(tmp_path: Path, async_write: bool) -> None:
    env = TrajectoryRecorder(StampedEnv(), tmp_path, info_keys=("stage",), async_write=async_write)
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path, max_positive=2, max_negative=3, async_write=async_write)
    _run_episodes(env, 20)
    env.close()
    assert len(load_trajectories(tmp_path, split="positive")) == 2
    assert len(load_trajectories(tmp_path, split="negative")) == 3
    assert env.full
    # a restart counts what exists on disk
    env = TrajectoryRecorder(StampedEnv(), tmp_path, max_positive=2, max_negative=4, async_write=async_write)
    assert not env.full
    _run_episodes(env, 20)
    env.close()
    assert len(load_trajectories(tmp_path, split="positive")) == 2
    assert len(load_trajectories(tmp_path, split="negative")) == 4


def test_bad_caps_and_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_positive"):
        TrajectoryRecorder(StampedEnv(), tmp_path, max_positive=-1)
    with pytest.raises(ValueError, match="async_write must be False, True, 'sync', 'thread' or 'process'"):
        TrajectoryRecorder(StampedEnv(), tmp_path, async_write="yes")
    with pytest.raises(ValueError, match="observation keys"):
        TrajectoryRecorder(StampedEnv(), tmp_path, keys=["depth"])

    class TupleActions(StampedEnv):
        action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))

    env = TupleActions()
    env.action_space = TupleActions.action_space
    with pytest.raises(TypeError, match="fixed shape"):
        TrajectoryRecorder(env, tmp_path)


# ----------------------------------------------------------------------------- errors
def test_missing_success_key_raises_listing_keys(tmp_path: Path) -> None:
    env = TrajectoryRecorder(StampedEnv(success_key="is_success"), tmp_path)
    env.reset(seed=SEED_BASE)
    with pytest.raises(KeyError, match=r"'success'.*info keys are \['is_success', 'stage'\]"):
        env.step(np.zeros(1, np.float32))
    env = TrajectoryRecorder(StampedEnv(), tmp_path, info_keys=("door_open",))
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

    env = TrajectoryRecorder(BadFlagOnce(StampedEnv()), tmp_path, async_write="process")
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


def test_loader_errors_name_path_and_problem(tmp_path: Path) -> None:
    env = TrajectoryRecorder(StampedEnv(), tmp_path)
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path)
    _run_episodes(env, 2)
    env.close()
    (tmp_path / ".tmp" / "999999-partial").mkdir()
    (tmp_path / ".tmp" / "999999-partial" / "obs.rgb.npy").write_bytes(b"junk")
    trajs = load_trajectories(tmp_path)
    assert len(trajs) == 2
    assert isinstance(trajs[0].obs["rgb"], np.memmap)
    assert not trajs[0].obs["rgb"].flags.writeable


# ----------------------------------------------------------------------------- RLinf import
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
