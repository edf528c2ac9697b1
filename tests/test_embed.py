"""``rewardswap embed``: backbone embeddings stored as a trajectory field, crash-safe and resumable,
and read by the trainers like any state vector (the checkpoint names the backbone)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import collectors
import envs
from collectors import load_trajectories
from reward_wrappers.models.backbones import Backbone, load_backbone, to_stored
from trainers.embed import embed_buffers


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 7 * 7, 6))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 16x16 PointReach episodes: four clean expert ones (successes) and two random ones."""
    root = tmp_path_factory.mktemp("embed") / "data"
    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16, seed=0), root)
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.0 if e < 4 else 1.0, seed=e), range(6), seed=0)
    env.close()
    return root


@pytest.fixture
def data(recorded: Path, tmp_path: Path) -> Path:
    """A private copy: embedding writes into the buffer."""
    return Path(shutil.copytree(recorded, tmp_path / "data"))


def _all_frames(root: Path) -> np.ndarray:
    return np.concatenate([np.asarray(t.obs["rgb"]) for t in load_trajectories(root)])


def test_embeddings_are_the_backbone_output_in_float16(data: Path) -> None:
    backbone = Backbone(_net(0), name="tiny")
    n_frames = sum(len(t.obs["rgb"]) for t in load_trajectories(data))
    # One batch of every frame: the very call the reference makes, so equality is exact.
    stats = embed_buffers(data, backbone, batch_size=10_000, progress=False)
    assert (stats["embedded"], stats["skipped"], stats["frames"], stats["dim"]) == (6, 0, n_frames, 6)
    assert stats["frames_per_second"] > 0 and stats["identity"] == backbone.identity

    trajectories = load_trajectories(data)  # the reader's own checks pass with the new field
    stored = np.concatenate([np.asarray(t.obs["rgb_emb"]) for t in trajectories])
    np.testing.assert_array_equal(stored, to_stored(backbone(_all_frames(data))))
    for t in trajectories:
        assert t.obs["rgb_emb"].dtype == np.float16 and t.obs["rgb_emb"].shape == (len(t) + 1, 6)
        assert t.meta["fields"]["obs.rgb_emb"] == {"shape": [len(t) + 1, 6], "dtype": "<f2"}
        assert t.meta["embeddings"] == {"rgb_emb": {"identity": backbone.identity, "source": "tiny", "from": "rgb", "batch_rows": 8, "device": "cpu"}}

    # Batches of 7 frames cross trajectory boundaries; each frame still gets its own embedding.
    embed_buffers(data, backbone, out_key="small", batch_size=7, progress=False)
    for t in load_trajectories(data):
        np.testing.assert_allclose(np.asarray(t.obs["small"], np.float32), np.asarray(t.obs["rgb_emb"], np.float32),
                                   rtol=2e-3, atol=1e-3)


def test_torchscript_file_gives_the_module_embeddings(data: Path, tmp_path: Path) -> None:
    net = _net(1)
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 16, 16)), str(path))
    scripted = load_backbone(f"torchscript:{path}")
    assert scripted.source == f"torchscript:{path}" and scripted.identity.startswith("encoder:")

    embed_buffers(data, Backbone(net, name="tiny"), out_key="module", batch_size=10_000, progress=False)
    embed_buffers(data, scripted, out_key="scripted", batch_size=10_000, progress=False)
    for t in load_trajectories(data):
        np.testing.assert_array_equal(t.obs["scripted"], t.obs["module"])
        assert t.meta["embeddings"]["scripted"]["source"] == f"torchscript:{path}"


def test_missing_weights_files_are_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli import main

    # torchvision is not installed here: the missing file is found before it is imported.
    for source, missing in (("torchvision:resnet18@/nope.pth", "/nope.pth"), ("torchscript:/nope.pt", "/nope.pt")):
        with pytest.raises(FileNotFoundError, match=missing):
            load_backbone(source)
        assert main(["embed", "--data", str(data), "--backbone", source]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rewardswap embed: error:") and missing in err
    assert all("rgb_emb" not in t.obs for t in load_trajectories(data))


def test_rerun_skips_and_another_backbone_is_refused(data: Path) -> None:
    first = Backbone(_net(0), name="tiny")
    loaded_before = load_trajectories(data)  # their meta predates the run below, as a concurrent run's would
    assert embed_buffers(data, first, progress=False)["embedded"] == 6
    files = sorted(data.glob("*/*/obs.rgb_emb.npy"))
    stamps = [p.stat().st_mtime_ns for p in files]

    again = embed_buffers(data, Backbone(_net(0), name="tiny"), progress=False)  # same weights: same identity
    assert (again["embedded"], again["skipped"], again["frames"]) == (0, 6, 0)

    other = Backbone(_net(2), name="tiny")
    with pytest.raises(ValueError, match="--out-key") as info:
        embed_buffers(data, other, progress=False)
    assert first.identity in str(info.value) and other.identity in str(info.value)
    assert [p.stat().st_mtime_ns for p in files] == stamps  # nothing overwritten

    # A run that checked its trajectories before another run stored them: meta.json on disk decides.
    with pytest.raises(ValueError, match="meanwhile") as info:
        embed_buffers(loaded_before, other, progress=False)
    assert first.identity in str(info.value) and other.identity in str(info.value)
    late = embed_buffers(loaded_before, first, progress=False)
    assert (late["embedded"], late["skipped"]) == (0, 6)
    assert [p.stat().st_mtime_ns for p in files] == stamps

    with pytest.raises(ValueError, match=r"no observation key 'depth'.*\['rgb', 'rgb_emb', 'state'\]"):
        embed_buffers(data, first, key="depth", progress=False)
    with pytest.raises(ValueError, match="not an embedding"):  # a recorded field is never overwritten
        embed_buffers(data, first, out_key="state", progress=False)
    with pytest.raises(ValueError, match="not uint8 images"):
        embed_buffers(data, first, key="state", progress=False)


def test_a_crash_leaves_every_trajectory_readable(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.embed as embed_module

    real = embed_module.write_json_atomic
    calls = []

    def crash_once(path, payload):  # killed after the .npy was replaced, before meta.json
        calls.append(path)
        if len(calls) == 2:
            raise OSError("simulated crash")
        return real(path, payload)

    monkeypatch.setattr(embed_module, "write_json_atomic", crash_once)
    backbone = Backbone(_net(0), name="tiny")
    with pytest.raises(OSError, match="simulated crash"):
        embed_buffers(data, backbone, batch_size=16, progress=False)
    monkeypatch.undo()

    trajectories = load_trajectories(data)
    with_field = [t for t in trajectories if "rgb_emb" in t.obs]
    assert len(with_field) == 1  # the one finished before the crash, complete
    crashed = Path(calls[1]).parent
    assert (crashed / "obs.rgb_emb.npy").is_file() and "obs.rgb_emb" not in json.loads((crashed / "meta.json").read_text())["fields"]
    # A temp file of a run killed mid-write: ignored by readers, removed when its trajectory is redone.
    (crashed / ".obs.rgb_emb.npy.x1y2.tmp").write_bytes(b"half")
    assert len(load_trajectories(data)) == 6

    stats = embed_buffers(data, backbone, batch_size=16, progress=False)
    assert (stats["embedded"], stats["skipped"]) == (5, 1)
    assert not list(crashed.glob("*.tmp"))
    for t in load_trajectories(data):
        np.testing.assert_allclose(np.asarray(t.obs["rgb_emb"], np.float32), to_stored(backbone(np.asarray(t.obs["rgb"]))),
                                   rtol=2e-3, atol=1e-3)


def test_cli_embeds_then_trains_a_progress_model(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli import main
    from reward_wrappers import load_reward_model

    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(_net(3)), str(path))
    identity = load_backbone(f"torchscript:{path}").identity
    args = ["embed", "--data", str(data), "--backbone", f"torchscript:{path}", "--batch-size", "32", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "embedded 6 trajectories (0 skipped" in out and "frames/s" in out and identity in out
    assert main(args) == 0 and "embedded 0 trajectories (6 skipped" in capsys.readouterr().out

    checkpoint = tmp_path / "progress.pt"
    assert main(["train-reward", "progress", "--data", str(data), "--inputs", "rgb_emb", "--epochs", "1",
                 "--steps-per-epoch", "3", "--hidden", "16", "--device", "cpu", "--no-progress", "--out", str(checkpoint)]) == 0
    model = load_reward_model(checkpoint)
    assert model.spec.inputs["rgb_emb"].dtype == "float16"
    assert model.metadata["embeddings"] == {"rgb_emb": {"identity": identity, "source": f"torchscript:{path.resolve()}", "from": "rgb", "batch_rows": 8, "device": "cpu"}}
    window = model.spec.window  # progress models read a window of frames: (B, window, D)
    batch = {"rgb_emb": np.asarray(load_trajectories(data)[0].obs["rgb_emb"][:window])[None]}
    assert np.isfinite(model.predict(batch)).all()


def test_trajectories_embedded_by_two_backbones_are_refused_before_training(data: Path) -> None:
    from trainers import fit_classifier
    from trainers.data import recorded_embeddings

    first, other = Backbone(_net(0), name="tiny"), Backbone(_net(2), name="tiny")
    embed_buffers(data / "positive", first, progress=False)  # one split at a time: each run is consistent
    embed_buffers(data / "negative", other, progress=False)
    trajectories = load_trajectories(data)
    assert recorded_embeddings(trajectories, ["state"]) is None
    with pytest.raises(ValueError, match="one backbone") as info:
        recorded_embeddings(trajectories, ["state", "rgb_emb"])
    assert first.identity in str(info.value) and other.identity in str(info.value)
    with pytest.raises(ValueError, match="one backbone"):
        fit_classifier(data, data.parent / "clf.pt", inputs=("rgb_emb",), epochs=1, progress=False, device="cpu")
    assert not (data.parent / "clf.pt").exists()
