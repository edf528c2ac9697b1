"""Bradley-Terry preference models: labels, segment bookkeeping, learning, checkpoints, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reward_wrappers import load_reward_model
from tests.fake_trajectories import FakeTrajectory
from trainers import fit_preference
from trainers.evaluate import pair_metrics
from trainers.preference import Segment, bradley_terry_loss, gather_segments, read_preference_csv, synthetic_label


def reward_trajectories(n: int = 16, length: int = 12, seed: int = 0) -> list[FakeTrajectory]:
    """``rewards[t] = -|state[t+1, 0]|``: the env pays for the observation a step reaches."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        state = rng.normal(0, 1, (length + 1, 3)).astype(np.float32)
        rewards = -np.abs(state[1:, 0]).astype(np.float64)
        labels = np.zeros(length + 1, np.float32)
        labels[-1] = float(i % 2 == 0)  # stratified split needs both kinds
        out.append(FakeTrajectory({"state": state}, labels, rewards, f"fake/{i:03d}", f"p{i:03d}"))
    return out


def test_synthetic_labels_and_bt_loss_by_hand() -> None:
    assert synthetic_label(np.array([1.0, 2.0]), np.array([0.5, 0.5]), 1e-6) == 1.0
    assert synthetic_label(np.array([-1.0]), np.array([0.0]), 1e-6) == 0.0
    assert synthetic_label(np.array([0.3, 0.2]), np.array([0.5]), 1e-6) == 0.5
    # -log sigmoid(2 * (1 - 0)) = log(1 + e^-2) = 0.126928...
    loss = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]), beta=2.0)
    assert float(loss) == pytest.approx(0.126928, abs=1e-6)
    # a tie at equal returns costs log 2
    assert float(bradley_terry_loss(torch.tensor([3.0]), torch.tensor([3.0]), torch.tensor([0.5]), 1.0)) == pytest.approx(math.log(2))


def test_segment_reads_the_observations_that_pay_its_steps() -> None:
    traj = FakeTrajectory({"state": np.arange(6, dtype=np.float32)[:, None]}, np.zeros(6, np.float32), np.zeros(5), "x", "x")
    assert Segment(0, 1, 3).frames().tolist() == [2, 3, 4]  # steps 1, 2, 3 -> observations 2, 3, 4
    batch, owner = gather_segments([traj], [Segment(0, 1, 2), Segment(0, 3, 2)], ["state"], window=2)
    assert batch["state"][..., 0].tolist() == [[1, 2], [2, 3], [3, 4], [4, 5]]  # causal windows of 2
    assert owner.tolist() == [0, 0, 1, 1]


def test_pair_metrics_exclude_ties() -> None:
    m = pair_metrics(np.array([2.0, 0.0, 1.0, 5.0]), np.array([1.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.5, 0.0]))
    assert m["accuracy"] == pytest.approx(2 / 3) and m["ties"] == 1 and m["pairs"] == 4
    assert m["auc"] == pytest.approx(0.5)  # diffs: +1 (A), -1 (B), +5 (B): 1 of 2 orderings right


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pref") / "pref.pt"
    trajs = reward_trajectories(20)
    path = fit_preference(trajs, out, inputs=("state",), segment_length=5, num_pairs=640, num_val_pairs=200, epochs=8, batch_size=32, lr=3e-3, hidden=32, seed=0, device="cpu", logdir=out.parent / "tb", progress=False)
    return path, trajs


def test_fit_preference_learns_and_round_trips(fitted) -> None:
    path, trajs = fitted
    report = json.loads(path.with_name("pref.report.json").read_text())
    assert report["history"][-1]["train_loss"] < report["history"][0]["train_loss"]
    assert report["val_pair_accuracy"] > 0.85 and report["val_pair_auc"] > 0.9
    assert report["counts"]["val_pairs"] == 200 and report["counts"]["val_trajectories"] == 4
    assert any(p.name.startswith("events") for p in (path.parent / "tb").iterdir())
    model = load_reward_model(path)
    assert model.spec.output == "reward" and model.spec.extra["beta"] == 1.0
    batch = {"state": np.concatenate([t.obs["state"] for t in trajs[:3]])}
    assert np.array_equal(load_reward_model(path).predict(batch), model.predict(batch))
    # the learned per-step reward ranks states like the env reward -|x|
    x = np.linspace(-2, 2, 41, dtype=np.float32)
    r = model.predict({"state": np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)})
    assert r[20] > r[0] and r[20] > r[-1]


def test_same_seed_same_model(fitted, tmp_path) -> None:
    path, trajs = fitted
    again = fit_preference(trajs, tmp_path / "again.pt", inputs=("state",), segment_length=5, num_pairs=640, num_val_pairs=200, epochs=8, batch_size=32, lr=3e-3, hidden=32, seed=0, device="cpu", progress=False)
    for va, vb in zip(load_reward_model(path).net.state_dict().values(), load_reward_model(again).net.state_dict().values()):
        assert torch.equal(va, vb)


def test_csv_preferences_train_and_split_by_trajectory(tmp_path) -> None:
    trajs = reward_trajectories(10, seed=1)
    returns = {t.id: t.rewards.sum() for t in trajs}
    lines = ["a,b,label"]
    ids = [t.id for t in trajs]
    for i in ids:
        for j in ids:
            if i < j:
                lines.append(f"{i},{j},{1.0 if returns[i] > returns[j] else 0.0}")
    csv_path = tmp_path / "prefs.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    path = fit_preference(trajs, tmp_path / "csv.pt", preferences=csv_path, inputs=("state",), epochs=2, batch_size=8, hidden=16, seed=0, device="cpu", progress=False)
    counts = json.loads(path.with_name("csv.report.json").read_text())["counts"]
    # 10 trajectories -> 8 train, 2 val: 28 train pairs, 1 val pair, 16 straddling pairs dropped
    assert (counts["train_pairs"], counts["val_pairs"], counts["pairs_dropped_straddling_split"]) == (28, 1, 16)


def test_bad_csv_names_the_line(tmp_path) -> None:
    trajs = reward_trajectories(4)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\np000,p001,1\np000,p002,2\n")
    with pytest.raises(ValueError, match=r"bad.csv line 3: label '2' not in"):
        read_preference_csv(bad, trajs, 5)
    bad.write_text("a,b,label\np000,nope,1\n")
    with pytest.raises(ValueError, match=r"line 2: trajectory id 'nope' \(b\) is not in the data"):
        read_preference_csv(bad, trajs, 5)
    bad.write_text("a,b\np000,p001\n")
    with pytest.raises(ValueError, match=r"line 1: header .* lacks columns \['label'\]"):
        read_preference_csv(bad, trajs, 5)
    bad.write_text("a,b,label,a_start,b_start\np000,p001,1,0,10\n")
    with pytest.raises(ValueError, match=r"line 2: b_start=10 with segment_length=5 does not fit"):
        read_preference_csv(bad, trajs, 5)


def test_too_short_trajectories_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"segment_length=25, but none of the .* has that many steps \(longest: 12\)"):
        fit_preference(reward_trajectories(8), tmp_path / "m.pt", inputs=("state",), segment_length=25, progress=False)


def test_preference_model_is_a_raw_per_step_reward_for_learned_reward(fitted) -> None:
    import gymnasium as gym

    from reward_wrappers import LearnedReward

    path, _ = fitted
    model = load_reward_model(path)
    env = LearnedReward(gym.make("Pendulum-v1"), model, output="raw")  # 3-d float32 state, like the fake data
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.zeros(1, np.float32))
    assert reward == pytest.approx(float(model.predict({"state": obs[None]})[0]), abs=1e-6)
