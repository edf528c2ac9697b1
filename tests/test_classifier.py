"""trainers.fit_classifier on tiny generated data: learning, honesty of splits, round trips, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward_wrappers import load_reward_model
from reward_wrappers.models.base import sigmoid
from tests.fake_trajectories import separable_trajectories
from trainers import fit_classifier
from trainers.common import report_path
from trainers.data import split_by_trajectory

FAST = dict(epochs=10, batch_size=32, steps_per_epoch=8, lr=3e-3, patience=10, progress=False, hidden=32, device="cpu")


@pytest.mark.parametrize("inputs", [("state",), ("rgb",), ("rgb", "state")])
def test_separable_set_is_learned_and_loss_falls(tmp_path, inputs):
    data = separable_trajectories()
    out = fit_classifier(data, tmp_path / "clf.pt", inputs=inputs, **FAST)
    report = json.loads(report_path(out, ".report.json").read_text())
    history = report["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert report["at_threshold_0.5"]["accuracy"] >= 0.95
    assert {"precision", "recall"} <= set(report["at_threshold_0.5"])  # what a user tunes the threshold on
    assert report["val_auc"] >= 0.95
    assert report_path(out, ".errors.png").stat().st_size > 0


def test_training_batches_are_half_positive_however_rare_successes_are():
    from trainers.data import FrameTable, balanced_indices

    labels = np.zeros(200, np.float32)
    labels[[7, 150]] = 1.0  # 1 % positive frames
    table = FrameTable(traj=np.zeros(200, int), frame=np.arange(200), label=labels)
    rows = balanced_indices(table, 64, np.random.default_rng(0))
    assert len(rows) == 64 and table.label[rows].sum() == 32
    with pytest.raises(ValueError, match="1 positive and 0 negative"):
        balanced_indices(FrameTable(np.zeros(1, int), np.zeros(1, int), np.ones(1, np.float32)), 8,
                         np.random.default_rng(0))


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    data = separable_trajectories()
    out = fit_classifier(data, tmp_path / "clf.pt", inputs=("rgb", "state"), **FAST)
    model = load_reward_model(out)
    batch = {"rgb": np.stack([t.obs["rgb"][3] for t in data]), "state": np.stack([t.obs["state"][3] for t in data])}
    again = load_reward_model(out)
    np.testing.assert_array_equal(model.predict(batch), again.predict(batch))
    labels = np.array([t.labels[3] for t in data])
    assert ((sigmoid(model.predict(batch)) > 0.5) == (labels > 0.5)).mean() >= 0.9
    assert model.spec.inputs["rgb"].shape == (16, 16, 3) and model.spec.output == "logit"
    assert 0.0 < model.spec.threshold < 1.0


def test_same_seed_same_model(tmp_path):
    data = separable_trajectories()
    a = load_reward_model(fit_classifier(data, tmp_path / "a.pt", inputs=("rgb",), seed=3, **FAST))
    b = load_reward_model(fit_classifier(data, tmp_path / "b.pt", inputs=("rgb",), seed=3, **FAST))
    c = load_reward_model(fit_classifier(data, tmp_path / "c.pt", inputs=("rgb",), seed=4, **FAST))
    batch = {"rgb": data[0].obs["rgb"]}
    np.testing.assert_array_equal(a.predict(batch), b.predict(batch))
    assert not np.array_equal(a.predict(batch), c.predict(batch))


def test_split_is_by_trajectory_and_stratified():
    data = separable_trajectories(n=20)
    train, val = split_by_trajectory(data, 0.2, seed=0)
    assert {t.id for t in train}.isdisjoint({t.id for t in val})
    assert len(train) + len(val) == 20
    assert any(t.success for t in val) and any(not t.success for t in val)


def test_fit_classifier_validates_on_whole_held_out_trajectories(tmp_path):
    """The report's val frames are exactly the frames of the val trajectories it names, and the
    state normalisation comes from the train trajectories only (no frame of a val trajectory
    leaks into training)."""
    data = separable_trajectories(n=20)
    out = fit_classifier(data, tmp_path / "clf.pt", inputs=("state",), seed=1, **FAST)
    report = json.loads(report_path(out, ".report.json").read_text())
    val_ids = set(report["val_trajectory_ids"])
    by_id = {t.id: t for t in data}
    assert val_ids < set(by_id) and len(val_ids) == report["counts"]["val_trajectories"] == 4
    val = [by_id[i] for i in val_ids]
    train = [t for t in data if t.id not in val_ids]
    counts = report["counts"]
    for name, split in (("train", train), ("val", val)):
        labels = np.concatenate([t.labels for t in split])
        assert counts[f"{name}_frames_positive"] == int((labels > 0.5).sum())
        assert counts[f"{name}_frames_negative"] == int((labels <= 0.5).sum())
    train_states = np.concatenate([t.obs["state"] for t in train]).astype(np.float64)
    encoder = load_reward_model(out).net.encoders["state"]
    np.testing.assert_allclose(encoder.mean.numpy(), train_states.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_no_positives_is_a_clear_error(tmp_path):
    data = [t for t in separable_trajectories() if not t.success]
    with pytest.raises(ValueError, match="no success frames"):
        fit_classifier(data, tmp_path / "clf.pt", inputs=("state",), **FAST)


def test_empty_val_split_is_a_clear_error(tmp_path):
    data = separable_trajectories(n=2)  # one success, one failure: nothing left for val + train
    with pytest.raises(ValueError, match="split"):
        fit_classifier(data, tmp_path / "clf.pt", inputs=("state",), **FAST)


def test_shapes_differing_between_trajectories_name_both_paths(tmp_path):
    data = separable_trajectories(n=6)
    data[4].obs["rgb"] = np.zeros((13, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"fake/004.*\(8, 8, 3\)|\(8, 8, 3\).*fake/004"):
        fit_classifier(data, tmp_path / "clf.pt", inputs=("rgb",), **FAST)


def test_missing_input_key_lists_available(tmp_path):
    with pytest.raises(KeyError, match="depth.*rgb"):
        fit_classifier(separable_trajectories(n=6), tmp_path / "clf.pt", inputs=("depth",), **FAST)


def test_nothing_written_on_error(tmp_path):
    with pytest.raises(ValueError):
        fit_classifier([t for t in separable_trajectories() if not t.success], tmp_path / "clf.pt", inputs=("state",), **FAST)
    assert list(tmp_path.iterdir()) == []


def test_wrappers_refuse_an_env_whose_observations_differ_from_the_checkpoint(tmp_path):
    import envs
    from reward_wrappers import LearnedReward
    from reward_wrappers.sb3 import VecLearnedReward
    from stable_baselines3.common.vec_env import DummyVecEnv

    out = fit_classifier(separable_trajectories(image=16), tmp_path / "clf.pt", inputs=("rgb",), **FAST)
    model = load_reward_model(out)
    with pytest.raises(ValueError, match=r"expects shape \(16, 16, 3\).*gives \(64, 64, 3\)"):
        LearnedReward(envs.make("PointReach-v0", obs="rgb", render_size=64), model)
    with pytest.raises(ValueError, match="missing observation key 'rgb'"):
        VecLearnedReward(DummyVecEnv([lambda: envs.make("PointReach-v0", obs="state")]), model)
    LearnedReward(envs.make("PointReach-v0", obs="rgb", render_size=16), model)  # matching env is accepted


def test_resnet10_pretrained_encoder_is_loaded_and_frozen(tmp_path):
    import torch

    from reward_wrappers.models.base import InputSpec, ModelSpec
    from reward_wrappers.models.networks import TorchRewardModel

    donor = TorchRewardModel.build(ModelSpec(inputs={"rgb": InputSpec((16, 16, 3), "uint8")}), encoder="resnet10", hidden=16)
    weights = {k: v.clone() for k, v in donor.net.encoders["rgb"].state_dict().items()}
    torch.save(weights, tmp_path / "encoder.pt")
    fast = {**FAST, "epochs": 1, "steps_per_epoch": 2}
    out = fit_classifier(separable_trajectories(n=8, image=16), tmp_path / "clf.pt", inputs=("rgb",), encoder="resnet10",
                         pretrained=tmp_path / "encoder.pt", freeze_encoder=True, **fast)
    trained = load_reward_model(out).net.encoders["rgb"].state_dict()
    for key, value in weights.items():
        torch.testing.assert_close(trained[key], value, msg=f"frozen encoder weight {key} changed")

    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="match none of the encoder's parameters"):
        fit_classifier(separable_trajectories(n=8, image=16), tmp_path / "clf2.pt", inputs=("rgb",), encoder="resnet10",
                       pretrained=tmp_path / "bad.pt", **fast)


def test_freeze_encoder_freezes_only_image_encoders(tmp_path):
    data = separable_trajectories(n=8)
    with pytest.raises(ValueError, match="no image key"):
        fit_classifier(data, tmp_path / "a.pt", inputs=("state",), freeze_encoder=True, **FAST)
    import torch

    from reward_wrappers.models.base import InputSpec, ModelSpec
    from reward_wrappers.models.networks import TorchRewardModel

    torch.manual_seed(0)
    out = fit_classifier(data, tmp_path / "b.pt", inputs=("rgb", "state"), freeze_encoder=True, seed=0, **FAST)
    trained = load_reward_model(out).net
    torch.manual_seed(0)
    initial = TorchRewardModel.build(ModelSpec(inputs={"rgb": InputSpec((16, 16, 3), "uint8"), "state": InputSpec((4,), "float32")}),
                                     hidden=FAST["hidden"]).net
    for (name, p_initial), p_trained in zip(initial.encoders["rgb"].named_parameters(), trained.encoders["rgb"].parameters()):
        torch.testing.assert_close(p_trained, p_initial, msg=f"image encoder {name} changed")
    changed = [not torch.equal(a, b) for a, b in zip(initial.encoders["state"].net.parameters(), trained.encoders["state"].net.parameters())]
    assert all(changed), "the state encoder must keep training"


def test_split_keeps_a_lone_or_scarce_class_on_both_sides_when_it_can():
    data = separable_trajectories(n=20)
    one_positive = [t for t in data if not t.success][:9] + [t for t in data if t.success][:1]
    for fraction in (0.2, 0.5, 0.6):
        train, val = split_by_trajectory(one_positive, fraction, seed=0)
        assert any(t.success for t in train), fraction  # a stratum of one goes to train
    two_positive = [t for t in data if not t.success][:8] + [t for t in data if t.success][:2]
    train, val = split_by_trajectory(two_positive, 0.8, seed=0)
    assert sum(t.success for t in train) == 1 and sum(t.success for t in val) == 1


def _static_or_moving_trajectories(n: int = 24, length: int = 20, seed: int = 0):
    """Success means "did not move since the previous frame": one frame never shows it."""
    from tests.fake_trajectories import FakeTrajectory

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.uniform(-1, 1, length + 1)
        static = rng.random(length + 1) < 0.4
        static[0] = False
        for t in np.flatnonzero(static):
            x[t] = x[t - 1]
        state = np.stack([x, rng.normal(0, 0.1, length + 1)], axis=1).astype(np.float32)
        labels = static.astype(np.float32)
        out.append(FakeTrajectory({"state": state}, labels, np.zeros(length, np.float32), f"fake/{i:03d}", f"t{i:03d}"))
    return out


def test_a_window_of_frames_shows_motion_one_frame_cannot(tmp_path):
    data = _static_or_moving_trajectories()
    settings = {**FAST, "epochs": 15, "steps_per_epoch": 20, "hidden": 64}
    one = fit_classifier(data, tmp_path / "one.pt", inputs=("state",), **settings)
    two = fit_classifier(data, tmp_path / "two.pt", inputs=("state",), window=2, **settings)
    auc_one = json.loads(report_path(one, ".report.json").read_text())["val_auc"]
    report_two = json.loads(report_path(two, ".report.json").read_text())
    assert auc_one < 0.7 and report_two["val_auc"] >= 0.95, (auc_one, report_two["val_auc"])
    assert report_two["window"] == 2 and load_reward_model(two).spec.window == 2
    with pytest.raises(ValueError, match="window must be >= 1"):
        fit_classifier(data, tmp_path / "bad.pt", inputs=("state",), window=0, **FAST)
