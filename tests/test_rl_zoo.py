"""The reward wrappers in config-driven tools: rl-zoo3 stacks them from a hyperparameter file, by
checkpoint path (issue 22 point 8), and trains through its own entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rl_zoo3", reason="rl-zoo3 is part of the dev extra (make setup installs it)")

PROBE = textwrap.dedent(
    """
    import json
    from stable_baselines3.common.callbacks import BaseCallback


    class RecordRewards(BaseCallback):
        '''Writes what env 0 paid and what the wrappers put in its info, every step.'''

        def __init__(self, path):
            super().__init__()
            self.path, self.rows = path, []

        def _on_step(self):
            info = self.locals["infos"][0]
            self.rows.append({"reward": float(self.locals["rewards"][0]), "env_reward": info.get("env_reward"),
                              "learned_reward": info.get("learned_reward")})
            return True

        def _on_training_end(self):
            with open(self.path, "w") as f:
                json.dump(self.rows, f)
    """
)


def test_rl_zoo3_trains_with_learned_reward_and_pbrs_stacked_by_checkpoint_path(tmp_path: Path) -> None:
    import collectors
    import envs
    from trainers import fit_classifier

    data = tmp_path / "data"
    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", ignore_terminations=True), data)
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.3, seed=e), range(12), seed=0)
    env.close()
    clf = fit_classifier(data, tmp_path / "clf.pt", inputs=("state",), epochs=2, progress=False)

    (tmp_path / "zoo_probe.py").write_text(PROBE)
    rows_path = tmp_path / "rows.json"
    (tmp_path / "hyper.yml").write_text(textwrap.dedent(f"""
        PointReach-v0:
          n_timesteps: 2048
          policy: MlpPolicy
          n_envs: 2
          n_steps: 128
          batch_size: 64
          env_wrapper:
            - reward_wrappers.LearnedReward:
                model: {clf}
            - reward_wrappers.PBRS:
                potential: {clf}
                gamma: 0.99
          callback:
            - zoo_probe.RecordRewards:
                path: {rows_path}
        """))
    repo = Path(__file__).resolve().parents[1]
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "PointReach-v0", "--gym-packages", "envs",
         "--conf-file", str(tmp_path / "hyper.yml"), "-f", str(tmp_path / "logs"), "--seed", "0",
         "--eval-freq", "-1", "--vec-env", "dummy", "--device", "cpu"],
        env=env_vars, capture_output=True, text=True, timeout=900, cwd=tmp_path)  # generous: loaded CI machines
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(rows_path.read_text())
    assert len(rows) >= 1000
    learned = np.array([r["learned_reward"] for r in rows], float)
    env_reward = np.array([r["env_reward"] for r in rows], float)
    paid = np.array([r["reward"] for r in rows])
    assert np.all((learned >= 0) & (learned <= 1))  # the classifier's probability replaced the env reward...
    assert np.mean(np.isclose(paid, env_reward)) < 0.1  # ...so the agent was not paid the env's own reward
    assert np.mean(np.isclose(paid, learned)) < 0.5  # and PBRS's shaping was added on top
