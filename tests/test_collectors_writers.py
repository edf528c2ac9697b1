"""collectors: the writer back-ends, the writer process and crash safety.

Failed writes (sync, thread and process writers) raise and leave no partial trajectory; a
process killed mid-write leaves only complete trajectories; the writer process frees its shared
memory, survives its parent, falls back to a thread when killed, idles without polling, reports
writes in order and refuses a forked copy. Helpers: tests/collector_helpers.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from collectors import TrajectoryRecorder, TrajectoryWriteError, load_trajectories
from tests.collector_helpers import (
    RECORDER_KW,
    REPO,
    SEED_BASE,
    StampedEnv,
    _run_episodes,
    check_buffer,
    check_exact,
)

# ----------------------------------------------------------------------------- write failures, crash safety
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write=async_write)
    env.reset(seed=SEED_BASE)
    with pytest.raises(TrajectoryWriteError, match="disk full.*no partial trajectory"):
        for _ in range(4):
            env.step(np.zeros(1, np.float32))
        env.close()  # async: the writer thread's error surfaces here
    assert load_trajectories(tmp_path) == []
    assert not any((tmp_path / ".tmp").iterdir())


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
    TrajectoryRecorder(StampedEnv(), tmp_path).close()
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write="process", **RECORDER_KW)
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write="process",
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path / "a", async_write="process")
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path / "b", async_write="process")
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
    TrajectoryRecorder(StampedEnv(), tmp_path).close()
    assert not any((tmp_path / ".tmp").iterdir())


def test_process_writer_killed_falls_back_and_loses_nothing(tmp_path: Path) -> None:
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write="process", **RECORDER_KW)
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

    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write="process")
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
    env = TrajectoryRecorder(StampedEnv(), tmp_path, async_write="process")
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
