"""Bad input gets a clear error naming the file and what was expected (issue 18): checkpoints,
buffer files, recorder metadata, reward functions, output paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import collectors
import envs
from collectors import TrajectoryFormatError, load_trajectories
from reward_wrappers import load_reward_model
from reward_wrappers.models.base import CallableRewardModel


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainers import fit_classifier

    root = tmp_path_factory.mktemp("hardening")
    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", ignore_terminations=True), root / "data")
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.5, seed=e), range(8), seed=0)
    env.close()
    return fit_classifier(root / "data", root / "clf.pt", inputs=("state",), epochs=1, progress=False)


def _edited(checkpoint: Path, tmp_path: Path, edit) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    edit(payload)
    out = tmp_path / "edited.pt"
    torch.save(payload, out)
    return out


def test_arch_kwargs_that_claim_a_huge_network_are_refused_before_allocating(checkpoint: Path, tmp_path: Path) -> None:
    # Before: hidden=10**7 allocated 5.4 GB for 16 s, then failed on the state dict.
    bad = _edited(checkpoint, tmp_path, lambda p: p["arch"]["kwargs"].update(hidden=10**7))
    with pytest.raises(ValueError, match=r"edited\.pt: .*does not match the stored weights"):
        load_reward_model(bad)  # the shapes are compared on torch's meta device: nothing allocated


@pytest.mark.parametrize("version, message", [("1", "positive integer"), (True, "positive integer"),
                                              (-7, "positive integer"), (99, "reads up to 1")])
def test_checkpoint_versions_must_be_positive_integers(checkpoint: Path, tmp_path: Path, version, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_reward_model(_edited(checkpoint, tmp_path, lambda p: p.update(version=version)))


def test_load_errors_name_the_file(checkpoint: Path, tmp_path: Path) -> None:
    missing = _edited(checkpoint, tmp_path, lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))))
    with pytest.raises(ValueError, match="edited.pt"):
        load_reward_model(missing)
    with pytest.raises(ValueError, match="edited.pt.*unknown architecture"):
        load_reward_model(_edited(checkpoint, tmp_path, lambda p: p["arch"].update(name="nope")))
    with pytest.raises(ValueError, match="is a directory"):
        load_reward_model(tmp_path)


def test_a_checkpoint_save_that_fails_names_the_path_and_leaves_nothing(checkpoint: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from reward_wrappers import save_reward_model

    model = load_reward_model(checkpoint)

    def full_disk(*args, **kwargs):  # what torch raises when the disk fills mid-write
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write the checkpoint .*out\.pt"):
        save_reward_model(model, tmp_path / "out.pt")
    assert list(tmp_path.iterdir()) == []


def _one_trajectory(checkpoint: Path, tmp_path: Path) -> Path:
    source = load_trajectories(checkpoint.parent / "data")[0].path
    target = tmp_path / "buf" / source.parent.name / source.name
    shutil.copytree(source, target)
    return target


def _edit_meta(traj: Path, edit) -> None:
    meta = json.loads((traj / "meta.json").read_text())
    edit(meta)
    (traj / "meta.json").write_text(json.dumps(meta))


def test_field_names_must_stay_inside_the_trajectory(checkpoint: Path, tmp_path: Path) -> None:
    traj = _one_trajectory(checkpoint, tmp_path)
    secret = tmp_path / "outside.npy"
    np.save(secret, np.zeros(3))
    _edit_meta(traj, lambda m: m["fields"].update({"obs.x/../../../../outside": m["fields"]["obs.state"]}))
    with pytest.raises(TrajectoryFormatError, match="not a plain file stem"):
        load_trajectories(tmp_path / "buf")


def test_symlinks_are_refused_unless_allowed(checkpoint: Path, tmp_path: Path) -> None:
    traj = _one_trajectory(checkpoint, tmp_path)
    real = tmp_path / "labels_elsewhere.npy"
    shutil.move(traj / "labels.npy", real)
    (traj / "labels.npy").symlink_to(real)
    with pytest.raises(TrajectoryFormatError, match="labels.npy is a symlink"):
        load_trajectories(tmp_path / "buf")
    assert len(load_trajectories(tmp_path / "buf", allow_symlinks=True)) == 1


def test_a_split_that_disagrees_with_its_directory_is_an_error_not_a_silent_drop(checkpoint: Path, tmp_path: Path) -> None:
    traj = _one_trajectory(checkpoint, tmp_path)
    other = "negative" if traj.parent.name == "positive" else "positive"
    _edit_meta(traj, lambda m: m.update(split=other))
    for split in (traj.parent.name, None):  # before: dropped from its own split's listing, silently
        with pytest.raises(TrajectoryFormatError, match=f"says split '{other}'"):
            load_trajectories(tmp_path / "buf", split=split)


def test_a_header_shape_that_overflows_is_reported_with_the_file(checkpoint: Path, tmp_path: Path) -> None:
    traj = _one_trajectory(checkpoint, tmp_path)
    raw = (traj / "rewards.npy").read_bytes()
    length = json.loads((traj / "meta.json").read_text())["length"]
    header = raw[:128].decode("latin1")
    huge = header.replace(f"({length},)", f"({length}, 4611686018427387904, 4)").ljust(len(header))[:len(header)]
    (traj / "rewards.npy").write_bytes(huge.encode("latin1") + raw[128:])
    with pytest.raises(TrajectoryFormatError, match="rewards.npy"):
        load_trajectories(tmp_path / "buf")


@pytest.mark.parametrize("key", ["length", "format_version", "split"])
def test_recorder_metadata_cannot_override_reserved_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        collectors.TrajectoryRecorder(envs.make("PointReach-v0"), tmp_path / "buf", metadata={key: 1})


def test_a_reward_function_returning_none_says_so() -> None:
    model = CallableRewardModel(lambda batch: None)
    with pytest.raises(TypeError, match="returned None"):
        model.predict({"state": np.zeros((2, 3), np.float32)})


def test_train_reward_finds_an_unwritable_out_before_training(checkpoint: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli import main

    (tmp_path / "a_file").write_text("")
    code = main(["train-reward", "classifier", "--data", str(checkpoint.parent / "data"), "--inputs", "state",
                 "--out", str(tmp_path / "a_file" / "model.pt")])
    assert code == 2 and "is a file, not a directory" in capsys.readouterr().err


def test_bench_finds_missing_refit_buffers_before_any_run(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the refit conditions failed only once their runs started, after the others had run.
    from agents.cli import main
    from trainers import fit_classifier

    moved = tmp_path / "data"
    shutil.copytree(checkpoint.parent / "data", moved)
    clf = fit_classifier(moved, tmp_path / "clf.pt", inputs=("state",), epochs=1, progress=False)
    shutil.rmtree(moved)
    code = main(["bench", "--algo", "sac", "--steps", "64", "--seeds", "1", "--out", str(tmp_path / "out"),
                 "--conditions", "env", f"classifier:{clf}@refit-every=32@label-budget=8"])
    assert code == 2 and "give --refit-data DIR" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_bench_refuses_a_multi_frame_model_with_refits_before_any_run(checkpoint: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the refit condition failed at start-up inside its run, after the env condition beside
    # it had trained to the end (an hour on ManiSkill pixels).
    from agents.cli import main
    from trainers import fit_classifier

    data = checkpoint.parent / "data"
    clf = fit_classifier(data, tmp_path / "clf2.pt", inputs=("state",), window=2, epochs=1, progress=False)
    for extra in ([f"classifier:{clf}@refit-every=32@label-budget=8@refit-data={data}"], [f"classifier:{clf}@demos={data}"]):
        code = main(["bench", "--algo", "sac", "--steps", "64", "--seeds", "1", "--out", str(tmp_path / "out"),
                     "--conditions", "env", *extra])
        err = capsys.readouterr().err
        assert code == 2 and "reads 2 frames" in err and "--window 1" in err, err
    assert not (tmp_path / "out" / "runs").exists()
