"""A learned reward under an optimising agent: the monitor, refits, replay relabelling, demonstrations.

The scripted env below makes every figure computable by hand: its state is the step count, it
succeeds at known steps and terminates or truncates at known steps.
"""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import envs
from agents.monitor import RewardMonitor, SuccessMonitor, precision_since
from agents.replay import RelabelingReplayBuffer, load_demonstrations
from reward_wrappers.models.base import SwappableModel, sigmoid
from reward_wrappers.sb3 import VecLearnedReward, VecPBRS
from agents.labelling import LabelQueue, parse_labeller
from agents.labelling.sources import with_ids
from reward_wrappers.transitions import VecTransitionFrames, needs_prev, reward_cores, transition_rewards


class ClockEnv(gym.Env):
    """State ``[t, odd]``: t counts steps, ``odd`` marks every other episode. True success at t in
    ``success_at``; odd episodes terminate at t == 3, the others are truncated at t == 5."""

    observation_space = spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, success_at=(4, 5), terminate_odd: bool = False) -> None:
        self.success_at = set(success_at)
        self.terminate_odd = terminate_odd
        self.episode = -1

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode % 2], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._obs(), {"success": False}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_odd and self.episode % 2 == 1 and self.t == 3
        truncated = not terminated and self.t == 5
        return self._obs(), 0.25 * self.t, terminated, truncated, {"success": self.t in self.success_at}


def step_model(on_steps):
    """A classifier (logit) calling success exactly at states whose t is in ``on_steps``."""
    return lambda batch: np.where(np.isin(batch["state"][:, 0], list(on_steps)), 10.0, -10.0)


def test_monitor_maths_by_hand():
    m = SuccessMonitor(window=6)
    for predicted, true, done in [([1, 0], [1, 0], [0, 0]), ([1, 1], [0, 1], [0, 0]), ([0, 1], [1, 1], [1, 1]),
                                  ([0, 0], [0, 0], [0, 0])]:
        m.update(predicted=np.array(predicted, bool), true=np.array(true, bool), learned_reward=np.array(predicted, float),
                 env_reward=np.array(true, float) * 2, dones=np.array(done, bool))
    # last 6 frames: (1,0) (1,1) (0,1) (1,1) (0,0) (0,0): tp 2, fp 1, fn 1, tn 2
    f = m.figures()
    assert (f["precision"], f["recall"], f["false_positive_rate"]) == (2 / 3, 2 / 3, 1 / 3)
    assert m.totals == {"tp": 3, "fp": 1, "fn": 1, "tn": 3}
    assert f["episode_precision"] == 1.0  # both finished episodes were called successes and were
    assert np.isnan(f["return_spearman"])  # two episodes: too few to rank
    assert precision_since([{"steps": 0, "tp_total": 0, "fp_total": 0}, {"steps": 9, "tp_total": 3, "fp_total": 1}], 0) == 0.75


def test_reward_monitor_on_a_scripted_env_matches_the_hand_computed_confusion_matrix(tmp_path):
    # Episodes of 5 steps; truth at t in {4, 5}, the model calls t in {3, 4}: per episode tp 1 (t=4),
    # fp 1 (t=3), fn 1 (t=5), tn 2 (t=1, 2). 40 env steps on 2 envs = 8 episodes.
    venv = VecLearnedReward(DummyVecEnv([ClockEnv] * 2), step_model({3, 4}))
    monitor = RewardMonitor(window=10_000, log_every=10, report_path=tmp_path / "m.json", verbose=0)
    PPO("MlpPolicy", venv, n_steps=20, batch_size=40, n_epochs=1, seed=0).learn(40, callback=monitor)
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["totals"] == {"tp": 8, "fp": 8, "fn": 8, "tn": 16, "precision": 0.5, "recall": 0.5,
                                "false_positive_rate": 1 / 3}
    assert report["final"]["episode_precision"] == 1.0
    # The model pays sigmoid(+-10) per step (learned return ~2), the env 0.25 t (return 3.75) in every episode:
    # the env returns are tied, so there is no rank correlation to report.
    assert report["final"]["return_spearman"] is None
    assert not report["warned"]  # 0.5 < 0.9, but only 16 frames were called successes (it waits for 50)
    assert report["labels_used"] == 0


def test_monitor_warns_once_below_the_bound():
    venv = VecLearnedReward(DummyVecEnv([ClockEnv] * 2), step_model({1, 2, 3}))
    monitor = RewardMonitor(min_positives=50, log_every=10, verbose=0)
    with pytest.warns(RuntimeWarning, match="precision is 0.00") as caught:
        PPO("MlpPolicy", venv, n_steps=100, batch_size=100, n_epochs=1, seed=0).learn(200, callback=monitor)
    assert sum("reward monitor" in str(w.message) for w in caught) == 1
    assert monitor.warned


def test_monitor_is_off_without_a_success_flag(tmp_path):
    venv = VecLearnedReward(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), lambda b: b["state"][:, 0])
    monitor = RewardMonitor(report_path=tmp_path / "m.json", verbose=0)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1).learn(32, callback=monitor)
    assert json.loads((tmp_path / "m.json").read_text())["enabled"] is False


def test_env_labeller_counts_every_label_and_stops_at_the_budget(tmp_path):
    store = VecTransitionFrames(DummyVecEnv([ClockEnv]), ("state",), recent=10)
    store.reset()
    for _ in range(10):
        store.step(np.zeros((1, 1), np.float32))
    queue, source = LabelQueue(tmp_path, budget=5, source="env"), parse_labeller("env")

    def ask(indices):
        indices = np.asarray(indices)
        frames = {k: v[indices] for k, v in store.recent_frames().items()}
        episodes, steps = (ids[indices] for ids in store.recent_ids())
        asked = queue.ask(frames, episodes, steps, np.zeros(len(indices)))
        chosen = indices[: len(asked)]
        answers = source.answer(with_ids(frames, episodes, steps), truth=lambda: store.true_success(chosen))
        for q, a in zip(asked, answers):
            queue.answer(q.id, a)
        return [q.label for q in asked], [(q.episode, q.step, int(q.frames["state"][0])) for q in asked]

    # the ring's oldest first: episode 0's frames 3 and 4, episode 1's frame 5 (truncated there); success from t = 4
    assert ask([2, 3, 9]) == ([False, True, True], [(0, 3, 3), (0, 4, 4), (1, 5, 5)])
    assert (queue.used, queue.remaining) == (3, 2)
    assert ask([0, 1, 2, 3])[0] == [False, False]  # two answered, the rest never asked
    assert ask([4])[0] == [] and queue.used == 5


def test_a_swapped_model_pays_from_the_very_next_step():
    live = SwappableModel(step_model({1}))
    venv = VecLearnedReward(DummyVecEnv([ClockEnv]), live, output="binary")
    venv.reset()
    assert venv.step(np.zeros((1, 1), np.float32))[1].tolist() == [1.0]  # t = 1
    live.swap(step_model({2}))
    assert venv.step(np.zeros((1, 1), np.float32))[1].tolist() == [1.0]  # t = 2, paid by the new model
    live.swap(step_model({2}))
    with pytest.raises(ValueError, match="same inputs"):
        from reward_wrappers.models.base import ModelSpec, InputSpec, as_reward_model

        other = as_reward_model(lambda b: b["rgb"].sum((1, 2, 3)))
        other.spec = ModelSpec({"rgb": InputSpec((8, 8, 3), "uint8")})
        live.swap(other)


def _relabel_stack(vec_env_cls, live, potential):
    frames = VecTransitionFrames(vec_env_cls([lambda: ClockEnv(terminate_odd=True)] * 2), ("state",))
    venv = VecPBRS(VecLearnedReward(frames, live, output="prob"), potential, gamma=0.9, scale=2.0, offset=-0.5)
    cores = reward_cores(venv)
    frames.keep_prev = needs_prev(cores)
    kwargs = dict(frames=frames, reward_fn=lambda *a: transition_rewards(cores, *a), demos=None)
    return venv, kwargs


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_relabelled_replay_rewards_equal_the_new_models_rewards(vec_env_cls):
    class NotPicklable:  # a model pickled into a worker would fail loudly
        spec = None

        def __init__(self, fn):
            self.fn = fn

        def predict(self, batch):
            return self.fn(batch)

        def __reduce__(self):
            raise pickle.PicklingError("reward models stay in the main process")

    live = SwappableModel(NotPicklable(lambda b: b["state"][:, 0] - 2.0))
    potential = NotPicklable(lambda b: 0.1 * b["state"][:, 0] + b["state"][:, 1])
    venv, kwargs = _relabel_stack(vec_env_cls, live, potential)
    agent = SAC("MlpPolicy", venv, learning_starts=10, batch_size=16, buffer_size=1_000, seed=0,
                replay_buffer_class=RelabelingReplayBuffer, replay_buffer_kwargs=kwargs)
    agent.learn(60)
    buf = agent.replay_buffer
    n = buf.pos
    obs, nxt = buf.observations[:n].reshape(-1, 2), buf.next_observations[:n].reshape(-1, 2)
    terminated = (buf.dones[:n] * (1 - buf.timeouts[:n])).reshape(-1)
    assert 0 < terminated.sum() < (buf.dones[:n] > 0).sum()  # both terminations and truncations are stored

    def by_hand(model_shift):
        phi = lambda o: 2.0 * (0.1 * o[:, 0] + o[:, 1] - 0.5)  # noqa: E731 (scale 2, offset -0.5)
        return sigmoid(nxt[:, 0] - model_shift) + 0.9 * np.where(terminated > 0, 0.0, phi(nxt)) - phi(obs)

    np.testing.assert_allclose(buf.rewards[:n].reshape(-1), by_hand(2.0), rtol=1e-6, atol=1e-6)  # what the wrappers paid
    live.swap(NotPicklable(lambda b: 3.0 - b["state"][:, 0]))
    assert buf.relabel() == 2 * n
    np.testing.assert_allclose(buf.rewards[:n].reshape(-1), sigmoid(3.0 - nxt[:, 0]) + by_hand(2.0) - sigmoid(nxt[:, 0] - 2.0),
                               rtol=1e-6, atol=1e-6)
    venv.close()


def _record(tmp_path, episodes=6):
    from collectors import TrajectoryRecorder, record_episodes

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16), tmp_path / "demos")
    record_episodes(env, lambda e: envs.expert_policy(env, noise=0.0, seed=e), range(episodes), seed=0)
    env.close()
    from collectors import load_trajectories

    return list(load_trajectories(tmp_path / "demos"))


def test_demonstrations_take_rewards_from_the_model_and_flags_from_the_record(tmp_path):
    trajs = _record(tmp_path)
    state_space = spaces.Box(-np.inf, np.inf, (6,), np.float32)
    action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
    demos = load_demonstrations(tmp_path / "demos", state_space, action_space, ("rgb",))
    successful = [t for t in trajs if t.success]
    assert demos.trajectories == len(successful) > 0 and len(demos) == sum(len(t) for t in successful)
    first = successful[0]
    np.testing.assert_array_equal(demos.obs["state"][: len(first)], first.obs["state"][:-1])
    np.testing.assert_array_equal(demos.next_obs["state"][: len(first)], first.obs["state"][1:])  # T+1 frames aligned
    np.testing.assert_array_equal(demos.next_frames["rgb"][: len(first)], first.obs["rgb"][1:])
    np.testing.assert_array_equal(demos.terminated[: len(first)], first.terminated)
    assert demos.terminated.any()  # PointReach ends on success: the record's flags arrive
    np.testing.assert_allclose(demos.actions[: len(first)], np.clip(first.actions, -2, 2) / 2.0, atol=1e-6)

    red = lambda b: b["rgb"][..., 0].mean(axis=(1, 2)) / 255.0  # noqa: E731 - the reward reads rgb only
    venv = DummyVecEnv([lambda: envs.make("PointReach-v0", obs="state+rgb", render_size=16)])
    frames = VecTransitionFrames(venv, ("rgb",))
    stack = VecLearnedReward(frames, red, output="raw")
    cores = reward_cores(stack)
    buf = RelabelingReplayBuffer(100, state_space, action_space, frames=frames, demos=demos, demo_ratio=0.5,
                                 reward_fn=lambda *a: transition_rewards(cores, *a))
    np.testing.assert_allclose(demos.rewards, red({"rgb": demos.next_frames["rgb"]}))
    assert not np.allclose(demos.rewards, demos.env_rewards)  # never the recorded env reward
    for _ in range(3):
        buf.add(np.zeros((1, 6)), np.zeros((1, 6)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    sample = buf.sample(10)
    assert sample.observations.shape == (10, 6)
    demo_rows = sample.observations[5:].numpy()
    assert all((demos.obs["state"] == row).all(axis=1).any() for row in demo_rows)  # half the batch from demos
    with pytest.raises(ValueError, match="no observation key 'depth'"):
        load_demonstrations(tmp_path / "demos", state_space, action_space, ("depth",))
    with pytest.raises(ValueError, match=r"shape \(6,\).*policy observes shape \(7,\)"):
        load_demonstrations(tmp_path / "demos", spaces.Box(-1, 1, (7,), np.float32), action_space, ("rgb",))


def _classifier(tmp_path):
    from trainers import fit_classifier

    _record(tmp_path, episodes=8)
    from collectors import TrajectoryRecorder, record_episodes

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16, ignore_terminations=True),
                             tmp_path / "demos")
    record_episodes(env, lambda e: envs.expert_policy(env, noise=1.0, seed=e), range(100, 106), seed=100)
    env.close()
    return fit_classifier(tmp_path / "demos", tmp_path / "c.pt", inputs=("rgb",), epochs=1, progress=False)


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_train_agent_refits_within_the_budget_and_reports_every_count(tmp_path, algo):
    from agents.train import TrainConfig, train_agent

    ckpt = _classifier(tmp_path)
    extra = dict(demos=str(tmp_path / "demos")) if algo == "sac" else {}
    cfg = TrainConfig(env="PointReach-v0", algo=algo, reward=f"classifier:{ckpt}", policy_obs="state", steps=384, n_envs=2,
                      render_size=16, eval_freq=384, eval_episodes=2, logdir=str(tmp_path / "run"), refit_every=128,
                      label_budget=100, refit_epochs=1, seed=0,
                      algo_kwargs={"learning_starts": 64, "batch_size": 32} if algo == "sac" else {"n_steps": 64}, **extra)
    summary = train_agent(cfg)
    run = tmp_path / "run"
    report = json.loads((run / "reward_monitor.json").read_text())
    # 14 recorded trajectories (8 + 6): the classifier's data, its refit data and (SAC) the demonstrations, one mark each, once
    marks = len([d for split in ("positive", "negative") for d in (tmp_path / "demos" / split).iterdir()])
    assert marks == 14
    labels = summary["labels"]
    assert (labels["trajectory_marks"], labels["source"], labels["budget"]) == (marks, "env", 100)
    assert 0 < labels["queries"] == sum(r["new_answers"] for r in summary["refits"]) <= 100
    assert summary["labels_used"] == report["labels_used"] == marks + labels["queries"]
    assert [r["labels_used"] for r in report["refits"]] == [marks + sum(r["new_answers"] for r in summary["refits"][: k + 1])
                                                            for k in range(len(report["refits"]))]
    answers = [json.loads(line) for line in (run / "labels" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == labels["queries"] and {a["source"] for a in answers} == {"env"}
    assert json.loads((run / "run_config.json").read_text())["labels"]["total"] == summary["labels_used"]
    assert len(list((run / "refits").glob("refit_*.pt"))) == len(summary["refits"]) >= 2
    assert all(r["steps"] < 384 for r in summary["refits"])  # no refit once the budget is reached
    assert all(r["new_answers"] <= 50 for r in summary["refits"])  # 100 labels shared by the 2 refits before the end
    from reward_wrappers import load_reward_model

    meta = load_reward_model(run / "refits" / "refit_001.pt").metadata["refit"]
    assert meta["labels_used"] == summary["refits"][0]["labels_used"]
    saved = json.loads((run / "run_config.json").read_text())["config"]
    assert (saved["refit_every"], saved["label_budget"]) == (128, 100)
    if algo == "sac":
        import zipfile

        saved_agent = json.loads(zipfile.ZipFile(run / "model.zip").read("data"))
        assert saved_agent["replay_buffer_kwargs"] == {}  # the frame store and reward models stay out of model.zip
        assert summary["demo_transitions"] > 0
        assert all(r["relabelled_transitions"] > summary["demo_transitions"] for r in summary["refits"])


def test_correction_settings_are_checked_before_training(tmp_path):
    from agents.train import TrainConfig

    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")
    for kwargs, message in [(dict(reward="env", refit_every=10, label_budget=5), "refits a success classifier"),
                            (dict(reward=f"classifier:{ckpt}", refit_every=10, agent_frames="off"), "leaves the refits nothing"),
                            (dict(reward=f"classifier:{ckpt}", refit_every=0, label_budget=5), "must be positive"),
                            (dict(reward="env", label_budget=5), "give --refit-every"),
                            (dict(reward="env", demos=str(tmp_path)), "use --algo sac"),
                            (dict(reward="sparse", algo="sac", demos=str(tmp_path)), "use a learned reward or env"),
                            (dict(reward="env", algo="sac", demo_ratio=1.0), "demo-ratio")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**kwargs)


def test_refits_refuse_an_env_without_a_success_flag():
    store = VecTransitionFrames(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), ("state",), recent=4)
    store.reset()
    store.step(np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="nothing to stand in for a labeller.*--labeller web"):
        store.true_success(np.array([0]))


def test_precision_threshold_by_hand():
    from trainers.metrics import precision_threshold

    probs, labels = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.3]), np.array([1, 1, 0, 1, 1, 0])
    # called from the top: precision 1, 1, 2/3, 3/4, 4/5, 4/6
    assert precision_threshold(probs, labels, 0.8) == pytest.approx(0.45)  # 4 of the first 5 are right
    assert precision_threshold(probs, labels, 0.9) == pytest.approx(0.85)  # only the first two
    assert precision_threshold(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 0]), 0.9) is None  # a tie cannot be split


def test_env_reward_runs_keep_recorded_rewards_only_when_the_recording_states_them(tmp_path):
    """--reward env --demos: the recorded rewards enter the buffer when meta.json says they are
    this env's dense reward (rewardswap collect writes it); a recording that does not say, or says
    another env's kwargs, is refused by name."""
    from agents.cli import main
    from agents.train import TrainConfig, train_agent
    from collectors import load_trajectories

    out = tmp_path / "expert"
    assert main(["collect", "--env", "PointReach-v0", "--policy", "expert", "--episodes", "4", "--out", str(out),
                 "--obs", "state", "--seed", "0", "--sync-write"]) == 0
    trajs = [t for t in load_trajectories(out) if t.success]
    assert trajs and trajs[0].meta["env_reward"] == "dense" and trajs[0].meta["env"]["id"] == "PointReach-v0"
    cfg = TrainConfig(env="PointReach-v0", algo="sac", reward="env", policy_obs="state", steps=64, n_envs=2, seed=0,
                      demos=str(out), logdir=str(tmp_path / "run"), eval_episodes=2, eval_freq=10_000,
                      algo_kwargs={"learning_starts": 16, "batch_size": 8})
    summary = train_agent(cfg)
    assert summary["demo_transitions"] == sum(len(t) for t in trajs)
    assert summary["labels_used"] == len(load_trajectories(out))  # each demonstration's success mark, once
    state, action = spaces.Box(-np.inf, np.inf, (6,), np.float32), spaces.Box(-2.0, 2.0, (2,), np.float32)
    demos = load_demonstrations(out, state, action, (), ("PointReach-v0", {}, "dense"))
    frames = VecTransitionFrames(DummyVecEnv([lambda: envs.make("PointReach-v0")]), ())
    RelabelingReplayBuffer(100, state, action, frames=frames, demos=demos,
                           reward_fn=lambda *a: transition_rewards(reward_cores(frames), *a))
    np.testing.assert_array_equal(demos.rewards, np.concatenate([t.rewards for t in trajs]))  # the recorded ones
    assert len(np.unique(demos.rewards)) > 2  # PointReach's dense reward, not a success flag

    _record(tmp_path)  # a bare TrajectoryRecorder: meta.json says nothing about its rewards
    with pytest.raises(ValueError, match=r"meta.json does not state which reward"):
        load_demonstrations(tmp_path / "demos", state, action, (), ("PointReach-v0", {}, "dense"))
    with pytest.raises(ValueError, match=r"another reward.*kwargs: recorded \{\}, this run \{'goal_radius': 0.2\}"):
        load_demonstrations(out, state, action, (), ("PointReach-v0", {"goal_radius": 0.2}, "dense"))
