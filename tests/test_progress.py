"""Progress / stage models: exact labels and rewind sequences, causality, checkpoints, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_wrappers import load_reward_model
from reward_wrappers.models.base import InputSpec, ModelSpec
from reward_wrappers.models.networks import TorchRewardModel
from tests.fake_trajectories import FakeTrajectory
from trainers import fit_progress
from trainers.evaluate import first_success_frame, frame_windows, network_outputs, predict_trajectory, progress_quality
from trainers.progress_targets import (
    StageSource,
    fit_stage_priors,
    load_stage_annotations,
    progress_labels,
    rewind_clip,
    sample_windows,
    stage_progress,
    stage_targets,
    Demo,
)


def reach_trajectories(n: int = 16, seed: int = 0, image: int = 0) -> list[FakeTrajectory]:
    """1-D reach: ``state = [distance to goal, has_key, noise]``; even episodes succeed.

    Successful episodes shrink the distance steadily and pick up a "key" halfway; failed ones
    drift. ``info["has_key"]`` mirrors ``state[1]``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(8, 14))  # T_env actions, T_env + 1 frames
        if i % 2 == 0:
            dist = np.linspace(1.0, 0.0, length + 1)
            labels = (np.arange(length + 1) == length).astype(np.float32)
        else:
            dist = 1.0 + np.cumsum(np.abs(rng.normal(0, 0.05, length + 1)))
            labels = np.zeros(length + 1, np.float32)
        has_key = (np.arange(length + 1) >= (length + 1) // 2).astype(np.float32) if i % 2 == 0 else np.zeros(length + 1, np.float32)
        state = np.stack([dist, has_key, rng.normal(0, 0.01, length + 1)], axis=1).astype(np.float32)
        obs = {"state": state}
        if image:
            rgb = np.zeros((length + 1, image, image, 3), np.uint8)
            rgb[..., 0] = (255 * np.clip(dist, 0, 1))[:, None, None].astype(np.uint8)
            obs["rgb"] = rgb
        out.append(FakeTrajectory(obs, labels, -dist[1:].astype(np.float32), f"fake/{i:03d}", f"t{i:03d}", info={"has_key": has_key.astype(bool)}))
    return out


# ----------------------------------------------------------------------------- labels (hand-checked)
def test_progress_labels_match_rewind_formula_by_hand() -> None:
    # T = 4 frames (first success at frame 3): (i - a + 1) / (T - a)
    assert progress_labels(4).tolist() == [0.25, 0.5, 0.75, 1.0]
    assert np.allclose(progress_labels(4, start=1), [1 / 3, 2 / 3, 1.0])
    assert progress_labels(4, start=3).tolist() == [1.0]
    with pytest.raises(ValueError, match="outside a demo"):
        progress_labels(4, start=4)


def test_rewind_clip_appends_reversed_frames_with_decreasing_labels() -> None:
    frames, labels = rewind_clip(5, start=0, end=3, rewind_steps=2)
    assert frames.tolist() == [0, 1, 2, 3, 2, 1]
    assert np.allclose(labels, [0.2, 0.4, 0.6, 0.8, 0.6, 0.4])
    frames, labels = rewind_clip(4, start=1, end=3, rewind_steps=2)
    assert frames.tolist() == [1, 2, 3, 2, 1]
    assert np.allclose(labels, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    frames, labels = rewind_clip(4, start=0, end=3, rewind_steps=0)
    assert frames.tolist() == [0, 1, 2, 3] and labels.tolist() == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        rewind_clip(4, start=1, end=2, rewind_steps=2)  # cannot rewind past the clip start


def test_stage_targets_priors_and_progress_by_hand() -> None:
    stage, tau = stage_targets(6, [2])  # stage 0: frames 0-1, stage 1: frames 2-5
    assert stage.tolist() == [0, 0, 1, 1, 1, 1]
    assert tau.tolist() == [0.5, 1.0, 0.25, 0.5, 0.75, 1.0]
    priors = fit_stage_priors([(6, [2]), (4, [2])])  # fractions [1/3, 2/3] and [1/2, 1/2]
    assert np.allclose(priors, [5 / 12, 7 / 12])
    # y = P_{k-1} + a_k * tau with a = [1/3, 2/3]: equals (t + 1) / 6 for a single demo
    y = stage_progress(stage, tau, np.array([1 / 3, 2 / 3]))
    assert np.allclose(y, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    # three stages, an empty middle stage (both flags turn true on the same frame)
    stage, tau = stage_targets(5, [2, 2])
    assert stage.tolist() == [0, 0, 2, 2, 2] and np.allclose(tau, [0.5, 1.0, 1 / 3, 2 / 3, 1.0])


class FixedHeads:
    """Head outputs given by hand, so the losses can be computed on paper."""

    def __init__(self, stage_logits, tau_logits) -> None:
        self.outputs = (stage_logits, tau_logits)

    def head_outputs(self, batch):
        return self.outputs


def test_progress_losses_by_hand() -> None:
    from trainers.progress import progress_loss
    from trainers.progress_targets import WindowBatch

    zeros = np.zeros(2)
    # ReWiND: MSE between sigmoid(logit) and the target; logit 0 -> 0.5, targets 0.1 and 0.9
    target = WindowBatch(traj=zeros, frames=zeros, progress=np.array([0.1, 0.9]), stage=zeros.astype(int), tau=zeros)
    loss = progress_loss(FixedHeads(None, torch.zeros(1, 2, 1)), {}, target, torch.ones(1, 2))
    assert loss.item() == pytest.approx(0.16)
    # SARM: cross-entropy of the true stage + MSE on the true stage's tau. Two stages, equal stage
    # logits (CE = ln 2), tau logits 0 (sigmoid 0.5) against tau targets 0.25 and 1.0.
    target = WindowBatch(traj=zeros, frames=zeros, progress=zeros, stage=np.array([0, 1]), tau=np.array([0.25, 1.0]))
    loss = progress_loss(FixedHeads(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)), {}, target, torch.ones(1, 2))
    assert loss.item() == pytest.approx(np.log(2) + (0.25**2 + 0.5**2) / 2)
    # bootstrap weights: a weight-0 sample does not count
    loss = progress_loss(FixedHeads(None, torch.zeros(1, 2, 1)), {}, WindowBatch(
        traj=zeros, frames=zeros, progress=np.array([0.5, 0.0]), stage=zeros.astype(int), tau=zeros),
        torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(0.0)


def test_run_time_stage_progress_formula_by_hand() -> None:
    from reward_wrappers.models.progress_networks import ProgressNet

    spec = ModelSpec(inputs={"state": InputSpec((3,), "float32")}, window=1, output="progress")
    net = ProgressNet(spec, hidden=8, head_hidden=4, stage_priors=[0.25, 0.75])
    # progress = P_{k-1} + a_k * sigmoid(tau_k) for the argmax stage k
    stage_logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])  # stage 0, then stage 1
    tau_logits = torch.tensor([[[0.0, 5.0], [5.0, 0.0]]])  # the argmax stage's tau is sigmoid(0) = 0.5
    progress = net.progress_per_head(stage_logits, tau_logits)
    assert progress[0].tolist() == pytest.approx([0.25 * 0.5, 0.25 + 0.75 * 0.5])


def test_info_stage_starts_and_demo_cut_at_first_success() -> None:
    traj = reach_trajectories(2)[0]  # 0-based length T_env in [8, 14)
    end = first_success_frame(traj.labels)
    assert end == len(traj.labels) - 1
    starts = StageSource.parse("info:has_key").starts(traj, end + 1, required=True)
    assert starts == [int(np.flatnonzero(traj.info["has_key"])[0])]


def test_sampled_windows_are_causal_over_the_rewound_clip() -> None:
    rng = np.random.default_rng(0)
    demos = [Demo(0, 6)]
    batch = sample_windows(demos, 400, window=3, rewind=1.0, max_start=0.0, priors=None, rng=rng)
    for frames, y in zip(batch.frames, batch.progress):
        # the current (last) frame's label is (f + 1) / 6 for a clip starting at 0
        assert y == pytest.approx((frames[-1] + 1) / 6)
        # consecutive frames of a (rewound) clip differ by at most one step
        assert np.all(np.abs(np.diff(frames)) <= 1)
    # rewind produced windows that go backwards in time
    assert any(np.any(np.diff(f) < 0) for f in batch.frames)


# ----------------------------------------------------------------------------- network and causality
def test_causal_window_future_frames_never_change_past_predictions() -> None:
    spec = ModelSpec(inputs={"state": InputSpec((3,), "float32")}, window=4, output="progress")
    torch.manual_seed(0)
    model = TorchRewardModel.build(spec, "progress_net", hidden=16, ensemble=2)
    traj = reach_trajectories(2)[0]
    before = predict_trajectory(model, traj)
    changed = FakeTrajectory({"state": traj.obs["state"].copy()}, traj.labels, traj.rewards, traj.path, traj.id)
    t = 5
    changed.obs["state"][t + 1 :] += 10.0  # change every frame after t
    after = predict_trajectory(model, changed)
    assert np.array_equal(before[: t + 1], after[: t + 1])
    assert not np.allclose(before[t + 1 :], after[t + 1 :])
    assert frame_windows(3, 4).tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2]]


# ----------------------------------------------------------------------------- training end to end
@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("progress") / "progress.pt"
    trajs = reach_trajectories(20)
    path = fit_progress(trajs, out, inputs=("state",), window=2, epochs=6, batch_size=64, steps_per_epoch=25, lr=3e-3, hidden=32, ensemble=3, seed=1, device="cpu", logdir=out.parent / "tb", progress=False)
    return path, trajs


def test_fit_progress_learns_writes_report_and_round_trips(fitted) -> None:
    path, trajs = fitted
    report = json.loads(path.with_name("progress.report.json").read_text())
    history = report["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # loss falls
    assert report["val_median_spearman"] > 0.9
    assert report["counts"]["val_trajectories"] == 4 and report["counts"]["train_demos"] == 8
    assert any(p.name.startswith("events") for p in (path.parent / "tb").iterdir())
    model = load_reward_model(path)
    assert model.spec.output == "progress" and model.spec.window == 2 and model.spec.has_confidence
    # identical predictions after loading, values in [0, 1], confidence in [0, 1]
    original = TorchRewardModel  # noqa: F841 (documentation: load_reward_model needs no arch argument)
    batch = {"state": np.stack([t.obs["state"][[0, 1]] for t in trajs[:4]])}
    value, confidence = model.predict_with_confidence(batch)
    assert ((value >= 0) & (value <= 1)).all() and ((confidence >= 0) & (confidence <= 1)).all()
    assert np.array_equal(model.predict_confidence(batch), confidence)
    reloaded = load_reward_model(path)
    assert np.array_equal(reloaded.predict(batch), model.predict(batch))


def test_same_seed_same_model(fitted, tmp_path) -> None:
    path, trajs = fitted
    again = fit_progress(trajs, tmp_path / "again.pt", inputs=("state",), window=2, epochs=6, batch_size=64, steps_per_epoch=25, lr=3e-3, hidden=32, ensemble=3, seed=1, device="cpu", progress=False)
    a, b = load_reward_model(path), load_reward_model(again)
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_stage_mode_from_info_flags_learns_stages(tmp_path) -> None:
    trajs = reach_trajectories(20, seed=3)
    path = fit_progress(trajs, tmp_path / "stage.pt", inputs=("state",), window=1, stages="info:has_key", epochs=5, batch_size=64, steps_per_epoch=25, lr=3e-3, hidden=32, seed=0, device="cpu", progress=False)
    report = json.loads(path.with_name("stage.report.json").read_text())
    assert report["n_stages"] == 2 and sum(report["stage_priors"]) == pytest.approx(1.0)
    assert report["val_stage_accuracy"] > 0.9
    model = load_reward_model(path)
    assert not model.spec.has_confidence
    with pytest.raises(ValueError, match="no confidence output"):
        model.predict_confidence({"state": trajs[0].obs["state"][:2]})
    outputs = network_outputs(model, trajs[0])
    assert outputs.shape == (len(trajs[0].labels), 4)  # progress, confidence, 2 stage probabilities


# ----------------------------------------------------------------------------- clear errors
def test_no_successful_trajectories_is_a_clear_error(tmp_path) -> None:
    failed = [t for t in reach_trajectories(8) if not t.success]
    with pytest.raises(ValueError, match="reach success"):
        fit_progress(failed, tmp_path / "m.pt", inputs=("state",), progress=False)


def test_unknown_info_key_lists_the_available_ones(tmp_path) -> None:
    with pytest.raises(KeyError, match=r"no recorded info key 'is_grasped'.*\['has_key'\]"):
        fit_progress(reach_trajectories(8), tmp_path / "m.pt", inputs=("state",), stages="info:is_grasped", progress=False)


def test_bad_annotation_json_names_the_trajectory(tmp_path) -> None:
    bad = tmp_path / "stages.json"
    bad.write_text(json.dumps({"t000": [3], "t002": ["x"]}))
    with pytest.raises(ValueError, match="trajectory 't002'"):
        load_stage_annotations(bad)
    bad.write_text(json.dumps({"t000": [3], "t002": [2, 4]}))
    with pytest.raises(ValueError, match="'t002' has 2 stage boundaries"):
        load_stage_annotations(bad)
    bad.write_text(json.dumps({"t000": [5, 3]}))
    with pytest.raises(ValueError, match="non-decreasing"):
        load_stage_annotations(bad)
    trajs = reach_trajectories(8)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"t000": [3]}))
    with pytest.raises(KeyError, match="no entry for trajectory 't00[2-6]'"):
        fit_progress(trajs, tmp_path / "m.pt", inputs=("state",), stages=partial, progress=False)
    beyond = tmp_path / "beyond.json"
    beyond.write_text(json.dumps({t.id: [99] for t in trajs}))
    with pytest.raises(ValueError, match="stage start 99 is beyond"):
        fit_progress(trajs, tmp_path / "m.pt", inputs=("state",), stages=beyond, progress=False)


def test_progress_quality_on_hand_made_predictions() -> None:
    class T:
        def __init__(self, labels: list[float]) -> None:
            self.labels = np.array(labels, np.float32)

    q = progress_quality([np.array([0.1, 0.3, 0.2, 0.9]), np.array([0.2, 0.4]), np.array([0.5, 0.6])], [T([0, 0, 0, 1]), T([0, 0]), T([0, 0])])
    assert q["median_spearman"] == pytest.approx(0.8)  # ranks [1, 3, 2, 4] vs [1, 2, 3, 4]
    assert q["final_progress_auc"] == 1.0  # 0.9 beats 0.4 and 0.6
    assert q["episodes_success"] == 1 and q["episodes_failed"] == 2


# ----------------------------------------------------------------------------- online use of the checkpoint
def test_checkpoint_runs_online_in_progress_reward_and_pbrs_matching_offline(tmp_path) -> None:
    """Record PointReach episodes, fit, then run the loaded model online: the progress the
    wrapper computes step by step equals the offline causal prediction on the recorded episode,
    and PBRS shaping telescopes to gamma^T Phi(s_T) - Phi(s_0) (Phi(s_T) = 0 when terminated)."""
    import envs
    from collectors import TrajectoryRecorder, load_trajectories
    from reward_wrappers import PBRS, ProgressReward

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state", seed=0), tmp_path / "buf")
    policies = [envs.expert_policy(env, noise=n, seed=i) for i, n in enumerate((0.0, 0.2, 1.0))]
    for episode in range(24):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(policies[episode % 3](obs))
            done = terminated or truncated
    env.close()
    path = fit_progress(tmp_path / "buf", tmp_path / "p.pt", inputs=("state",), window=3, ensemble=2, epochs=2, steps_per_epoch=10, hidden=32, seed=0, device="cpu", progress=False)
    model = load_reward_model(path)

    gamma = 0.9
    online = TrajectoryRecorder(PBRS(ProgressReward(envs.make("PointReach-v0", obs="state", seed=1), model), model, gamma=gamma, min_confidence=0.0), tmp_path / "online")
    expert = envs.expert_policy(online, noise=0.1, seed=5)
    obs, info = online.reset(seed=100)
    phi0, progress, shaping, t = info["potential"], [], 0.0, 0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = online.step(expert(obs))
        progress.append(info["progress"])
        shaping += gamma**t * info["shaping_reward"]
        t += 1
    online.close()
    recorded = load_trajectories(tmp_path / "online")[0]
    offline = predict_trajectory(model, recorded)
    assert np.allclose(progress, offline[1:], atol=1e-6)
    assert phi0 == pytest.approx(offline[0], abs=1e-6)
    phi_last = 0.0 if terminated else offline[-1]
    assert shaping == pytest.approx(gamma**t * phi_last - offline[0], abs=1e-6)


def test_frames_where_success_holds_after_the_first_success_are_targets_of_one():
    from trainers.progress_targets import Demo, sample_windows

    # labels 0 0 1 1 1 0 1: first success at 2 (T = 3); success holds again at 3, 4 and 6, not 5.
    demo = Demo(index=0, length=3, held=np.array([3, 4, 6]))
    batch = sample_windows([demo], 3000, window=1, rewind=0.0, max_start=0.0, priors=None, rng=np.random.default_rng(0))
    targets = dict(zip(batch.frames.tolist(), batch.progress.tolist()))
    assert set(targets) == {0, 1, 2, 3, 4, 6}
    assert {f: round(p, 4) for f, p in targets.items()} == {0: 0.3333, 1: 0.6667, 2: 1.0, 3: 1.0, 4: 1.0, 6: 1.0}
    held_share = np.isin(batch.frames, [3, 4, 6]).mean()
    assert abs(held_share - 0.5) < 0.05  # 3 held frames against a demo of 3 frames


def test_failure_windows_are_causal_targets_of_zero_in_their_share():
    demo = Demo(index=0, length=4)
    failures = [(1, 6), (2, 3)]  # (trajectory index, frames)
    batch = sample_windows([demo], 4000, window=3, rewind=0.0, max_start=0.0, priors=None,
                           rng=np.random.default_rng(0), failures=failures, failure_fraction=0.3)
    from_failures = batch.traj != 0
    assert abs(from_failures.mean() - 0.3) < 0.03
    assert np.all(batch.progress[from_failures] == 0.0) and np.all(batch.progress[~from_failures] > 0.0)
    for traj, frames in zip(batch.traj[from_failures], batch.frames[from_failures]):
        n_frames = dict(failures)[int(traj)]
        assert 0 <= frames[-1] < n_frames  # a frame of that trajectory, window ending on it
        assert frames.tolist() == np.maximum(np.arange(frames[-1] - 2, frames[-1] + 1), 0).tolist()
    assert set(batch.traj[from_failures].tolist()) == {1, 2}


def test_failure_fraction_teaches_low_progress_off_the_demos(tmp_path) -> None:
    # Failed episodes sit where demos are half-way (distance 0.5) but carry a "wandering"
    # feature the demos never show: only training on failures tells the model they are no progress.
    trajs = reach_trajectories(24, seed=5)
    for t in trajs:
        if not t.success:
            t.obs["state"][:, 0] = 0.5
            t.obs["state"][:, 2] = 1.0
    kwargs = dict(inputs=("state",), window=1, epochs=8, batch_size=64, steps_per_epoch=30, lr=3e-3, hidden=32,
                  seed=0, device="cpu", progress=False)
    path = fit_progress(trajs, tmp_path / "with.pt", failure_fraction=0.3, **kwargs)
    report = json.loads(path.with_name("with.report.json").read_text())
    assert report["failure_fraction"] == 0.3 and load_reward_model(path).spec.extra["failure_fraction"] == 0.3
    assert report["val_mean_final_progress_failed"] < 0.15
    assert report["val_mean_final_progress_success"] > 0.8 and report["val_median_spearman"] > 0.9


def test_failure_fraction_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"failure_fraction must be in \[0, 1\)"):
        fit_progress(reach_trajectories(8), tmp_path / "m.pt", inputs=("state",), failure_fraction=1.0, progress=False)
    successes = [t for t in reach_trajectories(12) if t.success]
    with pytest.raises(ValueError, match="no failed trajectory"):
        fit_progress(successes, tmp_path / "m.pt", inputs=("state",), failure_fraction=0.3, progress=False)
