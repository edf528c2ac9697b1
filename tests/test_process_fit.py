"""Fitting the process reward (``train-reward process``) on real recorded PointReach episodes, and
what ``train-agent`` accepts and refuses of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import pytest

import envs
from agents.cli import main as cli
from collectors import TrajectoryRecorder, load_trajectories
from collectors.rollout import record_episodes
from reward_wrappers import ProcessPotential, load_reward_model
from reward_wrappers.process.net import ProcessNet
from trainers import fit_process
from trainers.metrics import spearman
from trainers.process_labels import Episode, label_provider


@pytest.fixture(scope="module")
def buffers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("process") / "reach"
    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16, seed=0), out)
    policies = [envs.expert_policy(env, noise=n, seed=i) for i, n in enumerate((0.0, 0.2))]
    record_episodes(env, lambda e: policies[e % 2], range(40), seed=0)
    env.close()
    return out


@pytest.fixture(scope="module")
def model(buffers: Path) -> Path:
    return fit_process(buffers, buffers.parent / "process.pt", inputs=("state",), epochs=4, steps_per_epoch=60,
                       seed=0, progress=False)


def test_fit_writes_a_process_checkpoint_whose_progress_follows_time(model: Path, buffers: Path) -> None:
    loaded = load_reward_model(model)
    assert isinstance(loaded.net, ProcessNet) and sorted(loaded.spec.inputs) == ["state"]
    report = loaded.metadata["report"]
    assert report["labels"] == "success" and report["counts"]["val_episodes_labelled"] >= 4
    # held-out episodes scored as online: progress rises with time (a reversed label or a broken
    # perspective gives a rank correlation near or below 0)
    assert report["val_median_spearman"] > 0.8
    potential = ProcessPotential(loaded)
    held_out = [t for t in load_trajectories(buffers) if t.id in set(loaded.metadata["val_trajectory_ids"]) and t.success]
    rhos = [spearman(potential.score_episode({"state": t.obs["state"]}, gamma=1.0).phi_star, np.arange(len(t.obs["state"]), dtype=float))
            for t in held_out]
    assert np.median(rhos) > 0.8


def test_fits_are_deterministic_for_a_seed(model: Path, buffers: Path, tmp_path: Path) -> None:
    again = fit_process(buffers, tmp_path / "again.pt", inputs=("state",), epochs=4, steps_per_epoch=60, seed=0, progress=False)
    a, b = load_reward_model(model).net.state_dict(), load_reward_model(again).net.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_images_are_refused_with_what_to_do_and_never_chosen_by_default(buffers: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embed them first"):
        fit_process(buffers, tmp_path / "x.pt", inputs=("rgb",), epochs=1, progress=False)
    chosen = fit_process(buffers, tmp_path / "y.pt", epochs=1, steps_per_epoch=5, progress=False)  # data: state + rgb
    assert list(load_reward_model(chosen).spec.inputs) == ["state"]


def test_a_user_label_provider_is_checked() -> None:
    provider = label_provider(lambda episode: np.zeros(3))
    with pytest.raises(ValueError, match=r"expected \(5,\)"):
        provider(Episode(np.zeros((5, 2)), np.zeros(5, bool)))
    assert label_provider("fn:numpy:ones").name == "fn:numpy:ones"
    with pytest.raises(ValueError, match="oracle"):
        label_provider("nonsense")


def test_cli_fits_and_train_agent_takes_it_only_as_a_potential_with_a_goal(model: Path, buffers: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.pt"
    assert cli(["train-reward", "process", "--data", str(buffers), "--out", str(out), "--inputs", "state", "--epochs", "1",
                "--steps-per-epoch", "20", "--no-progress"]) == 0
    assert "Spearman(Phi*, time)" in capsys.readouterr().out and out.is_file()
    base = ["train-agent", "--env", "PointReach-v0", "--steps", "256", "--n-envs", "2", "--eval-freq", "256",
            "--eval-episodes", "2", "--logdir", str(tmp_path / "run")]
    assert cli([*base, "--reward", f"process:{model}"]) == 2
    assert "shaping potential" in capsys.readouterr().err
    assert cli([*base, "--reward", "sparse", "--pbrs", str(model)]) == 2
    assert "--process-goal" in capsys.readouterr().err
    goal = ["--process-goal", "fn:envs.point_reach:goal_state"]
    assert cli([*base, "--reward", "sparse", "--pbrs", str(model), *goal, "--process-override", '{"tempo": 1}']) == 2
    assert "temperature" in capsys.readouterr().err
    assert cli([*base, "--reward", "sparse", "--pbrs", str(model), *goal, "--process-override", '{"temperature": 0.5}']) == 0
    assert (tmp_path / "run" / "eval.json").is_file()


def test_novelty_reads_about_one_on_unseen_expert_frames_and_more_on_noise(model: Path, buffers: Path) -> None:
    loaded = load_reward_model(model)
    net, held_out = loaded.net, set(loaded.metadata["val_trajectory_ids"])
    states = [t.obs["state"] for t in load_trajectories(buffers) if t.id in held_out]
    x = net.normalise(torch.as_tensor(np.concatenate(states), dtype=torch.float32))
    change = torch.as_tensor(np.concatenate([np.vstack([np.zeros((1, 6)), np.diff(s, axis=0)]) for s in states]), dtype=torch.float32) / net.std
    with torch.no_grad():
        typical = float(net.novelty(x, change).median())
        noisy = float(net.novelty(x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), change).median())
    assert 0.5 < typical < 2.0  # the scale is set on held-back training episodes
    assert noisy > 1.3 * typical  # unit noise on every feature: measured 1.56 against 1.09


def test_the_fusion_is_fitted_on_the_perspectives_the_online_feed_computes(model: Path, buffers: Path) -> None:
    """The fit computes each episode's perspectives at once (trainers.process._perspective_rows); the
    online feed step by step. They are two codings of one rule, so they must agree."""
    from trainers.process import _perspective_rows

    loaded = load_reward_model(model)
    states = next(t.obs["state"] for t in load_trajectories(buffers) if t.success)
    x = loaded.net.normalise(torch.as_tensor(states, dtype=torch.float32)).double().numpy()
    at_once = _perspective_rows(loaded.net, x, x[-1])[:, :3]
    online = ProcessPotential(loaded).score_episode({"state": states}, gamma=1.0).perspectives  # goal: the last frame
    np.testing.assert_allclose(at_once, online, atol=1e-5)


def test_any_vector_keys_and_dtypes(tmp_path: Path) -> None:
    """No 'state' key: the fit reads every vector key (a float64 'joints', a float16 embedding) and
    never the camera; the potential then scores that layout."""
    from tests.fake_trajectories import FakeTrajectory

    rng = np.random.default_rng(0)
    trajectories = []
    for i in range(24):
        t = np.linspace(0.0, 1.0, 15)
        joints = np.stack([t, 1 - t, rng.normal(0, 0.01, 15), t**2], axis=1)  # float64, moves toward a goal
        labels = (t >= 0.95).astype(np.float32)
        obs = {"joints": joints, "cam_emb": rng.normal(0, 1, (15, 8)).astype(np.float16),
               "cam": np.zeros((15, 24, 40, 3), np.uint8)}
        trajectories.append(FakeTrajectory(obs, labels, np.zeros(14, np.float32), f"fake/{i}", f"t{i}"))
    out = fit_process(trajectories, tmp_path / "p.pt", epochs=2, steps_per_epoch=20, progress=False)
    loaded = load_reward_model(out)
    assert sorted(loaded.spec.inputs) == ["cam_emb", "joints"]
    assert {k: s.dtype for k, s in loaded.spec.inputs.items()} == {"cam_emb": "float16", "joints": "float64"}
    scored = ProcessPotential(loaded).score_episode({k: trajectories[0].obs[k] for k in ("joints", "cam_emb")}, gamma=1.0)
    assert scored.potential.shape == (15,) and np.isfinite(scored.potential).all()


def test_the_anchored_hop_gives_a_still_agent_no_incremental_progress(model: Path, buffers: Path) -> None:
    loaded = load_reward_model(model)
    assert loaded.net.hop_form == "anchored"  # the fit's default
    still = np.repeat(load_trajectories(buffers)[0].obs["state"][5:6], 30, axis=0)  # 30 frames at rest at one state
    scored = ProcessPotential(loaded).score_episode({"state": still}, gamma=1.0)
    assert np.all(scored.perspectives[:, 0] == 0.0)  # Phi_I: the sum of hops from a frame to itself


def test_a_pairwise_fit_and_checkpoints_from_before_the_choice_load_as_fitted(buffers: Path, tmp_path: Path) -> None:
    pairwise = load_reward_model(fit_process(buffers, tmp_path / "pw.pt", inputs=("state",), epochs=1, steps_per_epoch=5,
                                             hop_form="pairwise", progress=False))
    assert pairwise.net.hop_form == "pairwise" and pairwise.net.anchor is None
    # A checkpoint written before hop_form existed has no such kwarg: the constructor's default
    # must rebuild exactly its state dict (hop_net, fusion and the buffers, no anchor).
    old = ProcessNet(pairwise.spec, hidden=128, fusion_hidden=32, reference_rows=pairwise.net.reference.shape[0])
    old.load_state_dict(pairwise.net.state_dict(), strict=True)
    with pytest.raises(ValueError, match="hop_form"):
        ProcessNet(pairwise.spec, hop_form="symmetric")
