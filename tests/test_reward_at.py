"""Rewards at episode end (issue 32 point 3): the learned reward is computed once per episode on its
final frame, paid on the last step (0 elsewhere); the reward's images are rendered only there; refits
ask about final frames; relabelling and demonstrations pay the same way; what cannot work is refused."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from agents.config import TrainConfig
from agents.replay import load_demonstrations
from reward_wrappers.sb3 import VecLearnedReward
from reward_wrappers.transitions import VecTransitionFrames, reward_cores, transition_rewards

EPISODE = 4


class FramesSeen:
    """A classifier on the state (logit = 10 * x) that records how many frames it was asked about."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, batch):
        self.batches.append(len(batch["state"]))
        return 10.0 * batch["state"][:, 0]


def point_envs(n: int, **kwargs) -> DummyVecEnv:
    return DummyVecEnv([lambda i=i: envs.make("PointReach-v0", ignore_terminations=True, max_episode_steps=EPISODE,
                                              seed=i, **kwargs) for i in range(n)])


def test_the_reward_is_paid_once_per_episode_on_its_final_frame() -> None:
    model = FramesSeen()
    venv = VecTransitionFrames(point_envs(2), ("state",), recent=64, final_only=True)
    venv = VecLearnedReward(venv, model, reward_at="episode-end")
    venv.reset()
    model.batches.clear()
    rewards, finals = [], []
    for _ in range(2 * EPISODE):
        _, r, dones, infos = venv.step(np.full((2, 2), 0.5, np.float32))
        rewards.append(r)
        finals.append([info["terminal_observation"][0] if d else None for info, d in zip(infos, dones)])
    rewards = np.array(rewards)
    ends = np.array([t % EPISODE == EPISODE - 1 for t in range(2 * EPISODE)])
    assert (rewards[~ends] == 0.0).all()
    for t in np.flatnonzero(ends):  # sigmoid(10 x) of each episode's final frame
        np.testing.assert_allclose(rewards[t], [1 / (1 + np.exp(-10.0 * x)) for x in finals[t]], rtol=1e-6)
    assert model.batches == [2, 2]  # the model read the 2 envs' final frames twice, nothing else
    # refits ask about final frames only: the ring holds the 4 episodes' last frames
    episodes, steps = venv.venv.recent_ids()
    assert steps.tolist() == [EPISODE] * 4 and len(set(episodes.tolist())) == 4


def test_images_are_rendered_on_the_last_step_only_and_match_a_rendered_run() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (2 * EPISODE, 2)).astype(np.float32)
    runs = {}
    for render_at in ("step", "episode-end"):
        env = envs.make("PointReach-v0", obs="state+rgb", ignore_terminations=True, max_episode_steps=EPISODE,
                        render_at=render_at, seed=0)
        obs, _ = env.reset()
        frames = [obs]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(a)
            frames.append(obs)
            if terminated or truncated:
                obs, _ = env.reset()
                frames.append(obs)
        runs[render_at] = frames
    drawn = [bool(f["rgb"].any()) for f in runs["episode-end"]]
    # reset, 4 steps (the last drawn), reset, 4 steps (the last drawn), reset
    assert drawn == [False, False, False, False, True] * 2 + [False]
    for lazy, full in zip(runs["episode-end"], runs["step"]):
        np.testing.assert_array_equal(lazy["state"], full["state"])
        if lazy["rgb"].any():
            np.testing.assert_array_equal(lazy["rgb"], full["rgb"])


def test_an_episode_that_ends_early_is_an_error_not_a_blank_final_frame() -> None:
    env = envs.make("PointReach-v0", obs="state+rgb", ignore_terminations=True, max_episode_steps=EPISODE,
                    render_at="episode-end", seed=0)
    env.unwrapped.ignore_terminations = False  # as an env that terminates on success would
    env.reset()
    env.unwrapped.px, env.unwrapped.py = env.unwrapped.gx, env.unwrapped.gy
    with pytest.raises(RuntimeError, match="ended at step 1 of 4"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="needs full-length episodes"):
        envs.make("PointReach-v0", obs="state+rgb", render_at="episode-end")


def test_relabelling_and_demonstrations_pay_at_episode_end_only(tmp_path) -> None:
    import collectors

    venv = VecLearnedReward(point_envs(1), FramesSeen(), reward_at="episode-end")
    cores = reward_cores(venv)
    nxt = {"state": np.array([[0.1] + [0.0] * 5, [0.2] + [0.0] * 5, [-0.3] + [0.0] * 5], np.float32)}
    last = np.array([False, True, True])
    rewards = transition_rewards(cores, {}, nxt, np.zeros(3), np.zeros(3, bool), last)
    np.testing.assert_allclose(rewards, [0.0, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(3.0))], rtol=1e-6)
    with pytest.raises(ValueError, match="needs each transition's `last` flag"):
        transition_rewards(cores, {}, nxt, np.zeros(3), np.zeros(3, bool))

    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", ignore_terminations=True, max_episode_steps=30),
                                        tmp_path / "demos")
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, seed=e), range(3), seed=0)
    env.close()
    demos = load_demonstrations(tmp_path / "demos", venv.observation_space, venv.action_space, ("state",))
    assert demos.trajectories == 3 and demos.last.tolist() == ([False] * 29 + [True]) * 3


@pytest.mark.parametrize("changes, message", [
    ({"pbrs": "fn:envs.point_key_door:remaining_path_potential"}, "PBRS pays"),
    ({"reward": "env"}, "has none"),
    ({"env": "CartPole-v1"}, "needs full-length episodes"),
    ({"ignore_terminations": False}, "needs full-length episodes"),
    ({"reward_at": "sometimes"}, "must be one of"),
])
def test_what_cannot_be_paid_at_episode_end_is_refused(tmp_path, changes, message) -> None:
    from reward_wrappers import ModelSpec, TorchRewardModel, save_reward_model

    space = envs.make("PointReach-v0").observation_space
    path = save_reward_model(TorchRewardModel.build(ModelSpec.from_space(space, ("state",)), encoder="mlp", hidden=8),
                             tmp_path / "c.pt")
    kwargs = dict(env="PointReach-v0", algo="sac", reward=f"classifier:{path}", reward_at="episode-end", steps=64,
                  logdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**kwargs, **changes})


def test_a_multi_frame_model_is_refused_before_any_run(tmp_path) -> None:
    from agents.preflight import check_checkpoints
    from reward_wrappers import ModelSpec, TorchRewardModel, save_reward_model

    space = envs.make("PointReach-v0").observation_space
    spec = ModelSpec.from_space(space, ("state",), window=2)
    path = save_reward_model(TorchRewardModel.build(spec, encoder="mlp", hidden=8), tmp_path / "two_frames.pt")
    cfg = TrainConfig(env="PointReach-v0", algo="sac", reward=f"classifier:{path}", reward_at="episode-end", steps=64,
                      logdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="reads 2 frames, but with --reward-at episode-end"):
        check_checkpoints(cfg)
    check_checkpoints(TrainConfig(**{**cfg.__dict__, "reward_at": "step"}))  # paid every step, it may read 2
