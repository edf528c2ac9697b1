"""Few labels: a classifier from 20 marked demonstrations, the agent's frames as unlabelled data, few queries."""

from __future__ import annotations

import numpy as np
import pytest

import collectors
import envs
from reward_wrappers import load_reward_model
from trainers import fit_classifier


def _record(root, episodes, noise, seed):
    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs="rgb", render_size=32, ignore_terminations=True), root)
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=noise, seed=e), episodes, seed=seed)
    env.close()
    return collectors.load_trajectories(root)


@pytest.mark.slow
def test_unlabelled_agent_frames_do_not_stop_the_reward_paying_true_successes(tmp_path):
    _record(tmp_path / "demos", range(20), noise=0.0, seed=0)  # 20 marked demonstrations: the only labels
    agent = _record(tmp_path / "agent", range(100, 120), noise=0.1, seed=100)  # an agent that mostly succeeds
    frames = np.concatenate([np.asarray(t.obs["rgb"]) for t in agent])
    truth = np.concatenate([np.asarray(t.labels) for t in agent]) > 0.5  # hidden from the fits
    assert 0.5 < truth.mean() < 0.8
    base = load_reward_model(fit_classifier(tmp_path / "demos", tmp_path / "c0.pt", epochs=30, progress=False, seed=0))

    def paid(model) -> np.ndarray:  # the default classifier reward: the probability
        return 1 / (1 + np.exp(-model.predict({"rgb": frames})))

    before = paid(base)
    called_rate = float((before > base.spec.threshold).mean())  # the prior a refit with no answers uses
    refit = dict(epochs=3, lr=1e-4, progress=False, seed=1, init=base, threshold_precision=0.95,
                 unlabelled={"rgb": frames})
    pu = paid(load_reward_model(fit_classifier(tmp_path / "demos", tmp_path / "pu.pt", prior=called_rate, **refit)))
    vice = paid(load_reward_model(fit_classifier(tmp_path / "demos", tmp_path / "vice.pt", prior=0.0, **refit)))
    # naive VICE (every agent frame a failure) cuts what a true success is paid; the PU refit keeps it
    assert vice[truth].mean() < before[truth].mean() - 0.2
    assert pu[truth].mean() > before[truth].mean() - 0.1 and pu[truth].mean() > 0.75
    assert pu[~truth].mean() < 0.2  # and failures stay unpaid
