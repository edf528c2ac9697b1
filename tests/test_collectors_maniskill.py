"""TrajectoryRecorder on a ManiSkill env made by envs.make (CPU sim, software Vulkan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collectors import TrajectoryRecorder, load_trajectories


@pytest.mark.maniskill
def test_recorder_on_maniskill_state_rgb(tmp_path: Path) -> None:
    import envs

    env = envs.make("PickCube-v1", obs="state+rgb", render_size=32, max_episode_steps=6)
    rec = TrajectoryRecorder(env, tmp_path, async_write=True)
    obs, info = rec.reset(seed=1)
    frames, episodes = [obs["rgb"].copy()], 0
    rewards, successes = [], [bool(info["success"])]
    while episodes < 2:
        obs, reward, terminated, truncated, info = rec.step(rec.action_space.sample())
        if episodes == 0:
            frames.append(obs["rgb"].copy())
            rewards.append(float(reward))
            successes.append(bool(info["success"]))
        if terminated or truncated:
            episodes += 1
            rec.reset()
    rec.close()
    trajs = load_trajectories(tmp_path)
    assert len(trajs) == 2
    first = min(trajs, key=lambda t: t.meta["episode_index"])
    assert first.meta["env_id"] == "PickCube-v1" and first.meta["seed"] == 1
    assert first.obs["rgb"].dtype == np.uint8 and first.obs["rgb"].shape == (len(first) + 1, 32, 32, 3)
    assert first.obs["state"].dtype == np.float32
    np.testing.assert_array_equal(first.obs["rgb"], np.stack(frames))  # images exactly as produced
    np.testing.assert_allclose(first.rewards, rewards)
    np.testing.assert_array_equal(first.labels, np.asarray(successes, np.float32))
