"""``reward_wrappers.checker.check_reward_stack``: passes on sound stacks (built-in dummy, images,
ManiSkill) and fails, saying what differs, where a stack is not sound."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from envs.dummy import CountingEnv
from reward_wrappers.checker import check_reward_stack


def test_passes_on_the_counting_env_with_state_and_images() -> None:
    report = check_reward_stack(lambda: CountingEnv(max_len=8, max_steps=5), lambda b: b["state"][:, 1], steps=60)
    assert report["recorded_episodes"] > 5 and report["terminated_episodes"] and report["truncated_episodes"]
    images = check_reward_stack(lambda: CountingEnv(max_len=8, max_steps=5, image=True),
                                lambda b: b["rgb"].reshape(len(b["rgb"]), -1).mean(axis=1) / 255.0, steps=30)
    assert images["twin_steps"] == 60


class ReusedBuffer(CountingEnv):
    """Returns one observation array, overwritten in place every step (as some simulators do)."""

    def _obs(self) -> Any:
        if not hasattr(self, "_buffer"):
            self._buffer = np.zeros(3, np.float32)
        self._buffer[:] = (self.t, self.x, self.length)
        return self._buffer


def test_an_env_that_reuses_its_observation_buffer_is_recorded_right_and_flagged_for_sb3() -> None:
    from reward_wrappers.checker import _check_recorder

    make = lambda: ReusedBuffer(max_len=6, max_steps=5)  # noqa: E731
    assert _check_recorder(make, steps=30, seed=0, success_key="success")["recorded_episodes"] > 3  # copies
    # SB3's DummyVecEnv hands over the terminal observation by reference; the reset overwrites it,
    # so the last step of every episode would be paid for the next episode's first frame.
    with pytest.raises(AssertionError, match="SB3 VecLearnedReward paid .* return fresh arrays"):
        check_reward_stack(make, lambda b: b["state"][:, 0], steps=30)


def test_a_stateful_reward_model_makes_the_twins_disagree() -> None:
    calls = {"n": 0}

    def stateful(batch: dict[str, np.ndarray]) -> np.ndarray:  # pays more each time it is called
        calls["n"] += 1
        return np.full(len(batch["state"]), float(calls["n"]))

    with pytest.raises(AssertionError, match="paid .* the per-env LearnedReward"):
        check_reward_stack(lambda: CountingEnv(max_len=6, max_steps=5), stateful, steps=20)


@pytest.mark.maniskill
def test_passes_on_maniskill_pushcube() -> None:
    import envs

    report = check_reward_stack(lambda: envs.make("PushCube-v1", max_episode_steps=8), lambda b: b["state"][:, 0],
                                steps=20)
    assert report["truncated_episodes"] >= 2
