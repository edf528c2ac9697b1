"""Any gymnasium env from the command line (issue 22): ``module:Env-id``, ``--env-kwargs``,
``--policy module:factory``, env specs recorded and checked, per-family defaults, float32 state.

The env lives in a throwaway module written to ``tmp_path`` (registered on import, with a
required constructor argument and float64 observations, as third-party suites have), and every
step goes through the CLI in a fresh process, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

SUITE = textwrap.dedent(
    """
    import os
    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces


    class Line(gym.Env):
        '''Move x toward ``target`` (a required constructor argument); success within 0.1.'''

        def __init__(self, target, render_mode=None):
            self.target = float(target)
            self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float64)
            self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x = float(self.np_random.uniform(-1.0, 1.0))
            return self._obs(), {"is_success": self._success()}

        def _obs(self):
            return np.array([self.x, self.target])

        def _success(self):
            return abs(self.x - self.target) < 0.1

        def step(self, action):
            self.x = float(np.clip(self.x + 0.2 * float(action[0]), -1.0, 1.0))
            return self._obs(), -abs(self.x - self.target), False, False, {"is_success": self._success()}


    gym.register("ThrowawaySuite/Line-v0", entry_point=Line, max_episode_steps=20)


    def scripted(env, seed):
        '''The suite's own scripted policy: a factory (env, seed) -> policy(obs) -> action.'''
        return lambda obs: np.array([np.clip((obs[1] - obs[0]) / 0.2, -1.0, 1.0)], np.float32)


    def dies(env, seed):
        '''A policy whose worker is killed from outside on its first action (seed 1's shard).'''
        def act(obs):
            if seed == 1:
                os.kill(os.getpid(), 9)
            return np.zeros(1, np.float32)
        return act
    """
)
ENV = "throwaway_suite:ThrowawaySuite/Line-v0"


@pytest.fixture()
def suite(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "throwaway_suite.py").write_text(SUITE)
    repo = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo)])}


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_collect_train_reward_train_agent_inspect_on_a_foreign_env_through_the_cli(tmp_path: Path, suite: dict[str, str]) -> None:
    data, clf, run = tmp_path / "data", tmp_path / "clf.pt", tmp_path / "run"
    kwargs = json.dumps({"target": 0.5})
    done = cli(suite, "collect", "--env", ENV, "--env-kwargs", kwargs, "--policy", "throwaway_suite:scripted",
               "--noise", "0.5", "--episodes", "12", "--max-episode-steps", "20", "--out", str(data), "--no-progress")
    assert done.returncode == 0, done.stderr
    from collectors import load_trajectories

    trajectories = load_trajectories(data)
    assert len(trajectories) == 12
    assert trajectories[0].meta["env"] == {"id": ENV, "kwargs": {"target": 0.5}, "max_episode_steps": 20, "render_size": 64}
    assert trajectories[0].obs["state"].dtype == np.float32  # the suite's float64, cast once in envs.make
    assert trajectories[0].meta["policy"] == "throwaway_suite:scripted"

    done = cli(suite, "train-reward", "classifier", "--data", str(data), "--out", str(clf), "--inputs", "state",
               "--epochs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr

    # No --env: the env (id and constructor arguments) comes from the checkpoint.
    done = cli(suite, "train-agent", "--reward", f"classifier:{clf}", "--steps", "2048", "--n-envs", "2",
               "--eval-freq", "1024", "--eval-episodes", "2", "--logdir", str(run))
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "run_config.json").read_text())
    assert config["config"]["env"] == ENV and config["config"]["env_kwargs"] == {"target": 0.5}
    assert config["defaults"]["family"] == "gymnasium"
    assert config["hyperparameters"] == {}  # SB3's own defaults for a gymnasium env
    assert config["normalize_obs"] is False and "workers" in config["defaults"]
    assert json.loads((run / "eval.json").read_text())["curve"]

    # Another constructor argument than the classifier's data: refused, saying what differs.
    done = cli(suite, "train-agent", "--env", ENV, "--env-kwargs", json.dumps({"target": -0.5}),
               "--reward", f"classifier:{clf}", "--steps", "64", "--logdir", str(tmp_path / "other"))
    assert done.returncode == 2
    assert "kwargs: {'target': 0.5} -> {'target': -0.5}" in done.stderr

    done = cli(suite, "inspect", str(clf), "--data", str(data), "--out", str(tmp_path / "review.html"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "review.html").read_text()
    held_out = json.loads((tmp_path / "clf.report.json").read_text())["val_trajectory_ids"]
    assert held_out and "held out only" in page and "(held out)" in page and "(train)" in page
    assert f"{len(held_out)} held out from the model" in page
    assert json.loads((tmp_path / "clf.report.json").read_text())["encoder"] is None  # a state-only model


def test_bad_env_ids_and_kwargs_fail_once_in_the_main_process(tmp_path: Path, suite: dict[str, str]) -> None:
    done = cli(suite, "train-agent", "--env", ENV, "--env-kwargs", json.dumps({"no_such_argument": 1}),
               "--steps", "64", "--logdir", str(tmp_path / "run"))
    assert done.returncode == 2 and "cannot be made with kwargs" in done.stderr and "Traceback" not in done.stderr
    done = cli(suite, "collect", "--env", "no_such_module:Line-v0", "--episodes", "1", "--out", str(tmp_path / "d"))
    assert done.returncode == 2 and "cannot import module 'no_such_module'" in done.stderr
    done = cli(suite, "bench", "--env", ENV, "--env-kwargs", "[1, 2]", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "--env-kwargs must be a JSON object" in done.stderr
    done = cli(suite, "train-agent", "--env", ENV, "--env-kwargs", json.dumps({"target": 0.1, "obs": "rgb"}),
               "--logdir", str(tmp_path / "run"))
    assert done.returncode == 2 and "['obs']" in done.stderr


def test_collect_returns_when_a_worker_is_killed(tmp_path: Path, suite: dict[str, str]) -> None:
    # Before: the parent waited forever for the dead worker's report.
    done = cli(suite, "collect", "--env", ENV, "--env-kwargs", json.dumps({"target": 0.0}), "--policy",
               "throwaway_suite:dies", "--episodes", "4", "--n-envs", "2", "--out", str(tmp_path / "d"),
               "--no-progress", timeout=240)
    assert done.returncode == 1
    assert "was killed by SIGKILL" in done.stderr


def test_env_family_defaults() -> None:
    import envs
    from agents.defaults import family_defaults

    assert envs.env_family("PointReach-v0") == "builtin"
    assert envs.env_family("CartPole-v1") == "gymnasium"
    slow = family_defaults("sac", "CartPole-v1", step_seconds=0.005)
    fast = family_defaults("sac", "CartPole-v1", step_seconds=0.00001)
    assert slow.subprocess and not fast.subprocess
    assert "5.00 ms per step" in slow.reasons["workers"]
    builtin = family_defaults("ppo", "PointReach-v0")
    assert not builtin.subprocess and not builtin.normalize_obs and builtin.hyperparameters["n_steps"] == 64
    # PointKeyDoor's rollouts hold whole episodes (the measured fix for its late successes); the
    # rest of its settings are the family's.
    keydoor = family_defaults("ppo", "PointKeyDoor-v0").hyperparameters
    assert keydoor["n_steps"] > gym.spec("PointKeyDoor-v0").max_episode_steps > builtin.hyperparameters["n_steps"]
    assert {k: v for k, v in keydoor.items() if k not in ("n_steps", "n_epochs")} == \
        {k: v for k, v in builtin.hyperparameters.items() if k not in ("n_steps", "n_epochs")}


def test_bench_sizes_parallel_runs_to_the_cores(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.bench import size_jobs
    from agents.train import TrainConfig

    assert size_jobs(3, 6, TrainConfig(), None, False, cores=2) == 2  # capped, and it says so
    assert "capped at 2" in capsys.readouterr().err
    assert size_jobs(3, 6, TrainConfig(), None, True, cores=2) == 3  # --oversubscribe
    assert size_jobs(None, 1, TrainConfig(), None, False, cores=16) == 1  # never more than the runs
    size_jobs(2, 4, TrainConfig(env="PushCube-v1", n_envs=8), None, False, cores=2)
    assert "18 processes on 2 cores" in capsys.readouterr().err  # 2 x (1 learner + 8 ManiSkill workers)


@pytest.mark.parametrize("env_id, n_envs", [("PointReach-v0", 3), ("Pendulum-v1", 5)])
def test_sac_updates_once_per_env_step_by_default_whatever_the_number_of_envs(tmp_path, env_id: str, n_envs: int) -> None:
    import json
    import zipfile

    from agents.defaults import family_defaults
    from agents.train import TrainConfig, train_agent

    steps = 12 * n_envs
    for name, extra, updates in [("default", {}, steps), ("pinned", {"gradient_steps": 1}, steps // n_envs)]:
        run = tmp_path / name
        train_agent(TrainConfig(env=env_id, algo="sac", steps=steps, n_envs=n_envs, eval_freq=10_000, eval_episodes=1,
                                logdir=str(run), algo_kwargs={"learning_starts": 0, "batch_size": 8, **extra}))
        data = json.loads(zipfile.ZipFile(run / "model.zip").read("data"))  # plain JSON fields only
        assert (data["num_timesteps"], data["_n_updates"]) == (steps, updates)
        reason = json.loads((run / "run_config.json").read_text())["defaults"]["updates"]
        assert f"{n_envs} gradient steps per vector step of {n_envs} envs: one update per env step" == reason.split("SAC: ")[1]
    assert family_defaults("sac", "PushCube-v1", n_envs=8).hyperparameters["gradient_steps"] == 8
    assert family_defaults("sac", "PushCube-v1", n_envs=4096).hyperparameters["gradient_steps"] == 64  # the batched cap
    assert "gradient_steps" not in family_defaults("ppo", "PushCube-v1", n_envs=8).hyperparameters


class GoalReach(gym.Env):
    """A goal-conditioned env as gymnasium-robotics and panda-gym write them: a ``Dict`` observation
    (an image entry beside the goal vectors), ``is_success`` in step infos only, none at reset."""

    def __init__(self, images_only: bool = False) -> None:
        vec = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)
        image = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        entries = {"camera": image} if images_only else {
            "observation": gym.spaces.Box(-1.0, 1.0, (4,), np.float64), "achieved_goal": vec, "desired_goal": vec,
            "camera": image}
        self.observation_space = gym.spaces.Dict(entries)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": np.r_[self.pos, self.pos], "achieved_goal": self.pos.copy(),
                "desired_goal": self.goal.copy(), "camera": np.zeros((8, 8, 3), np.uint8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = np.zeros(2), np.array([0.5, -0.5])
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.2 * np.asarray(action, np.float64), -1.0, 1.0)
        success = float(np.linalg.norm(self.pos - self.goal) < 0.05)
        return self._obs(), -float(np.linalg.norm(self.pos - self.goal)), False, False, {"is_success": np.float32(success)}


def test_a_goal_conditioned_dict_env_gives_a_flat_state_and_labelled_trajectories(tmp_path: Path) -> None:
    import collectors
    import envs
    from collectors.reader import load_trajectories

    gym.register("TestGoalReach-v0", entry_point=GoalReach, max_episode_steps=6)
    env = envs.make("TestGoalReach-v0", seed=0)
    # the image entry is left out; the vectors are concatenated in key order (achieved, desired, observation)
    assert env.observation_space.shape == (8,) and env.observation_space.dtype == np.float32
    obs, info = env.reset()
    assert obs.tolist() == [0.0, 0.0, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    assert info["success"] is False  # the env says nothing at reset

    recorder = collectors.TrajectoryRecorder(env, tmp_path / "data")
    toward_goal = [np.array([1.0, -1.0], np.float32)] * 2 + [np.array([0.25, -0.25], np.float32)] * 4
    collectors.record_episodes(recorder, lambda e: lambda obs, _a=iter(toward_goal): next(_a), [0], seed=0)
    recorder.close()
    (traj,) = load_trajectories(tmp_path / "data")
    # 0.2 * (1, -1) twice reaches (0.4, -0.4); the 0.05 * (1, -1) steps reach the goal on the 4th step
    assert traj.labelled and traj.success
    assert traj.labels.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_a_dict_env_with_only_images_asks_for_obs_rgb() -> None:
    import envs

    gym.register("TestGoalImages-v0", entry_point=GoalReach, kwargs={"images_only": True}, max_episode_steps=6)
    with pytest.raises(ValueError, match=r"only image entries \(camera\); use obs='rgb'"):
        envs.make("TestGoalImages-v0")
