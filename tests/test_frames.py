"""Frame sampling of video reward models: the rule by hand, the online feed against it, and
checkpoints and the CLI that carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_wrappers.base import CallableRewardModel, InputSpec, ModelSpec
from reward_wrappers.feed import ModelFeed
from reward_wrappers.frames import FrameSampling
from reward_wrappers.ops import NumpyOps, TorchOps
from trainers.evaluate import frame_windows


def test_indices_by_hand() -> None:
    assert FrameSampling(4).indices(1).tolist() == [0, 0, 0, 1]
    assert FrameSampling(4).indices(9).tolist() == [6, 7, 8, 9]
    assert FrameSampling(3, "strided", stride=4).indices(5).tolist() == [0, 1, 5]
    assert FrameSampling(3, "strided", stride=4).indices(20).tolist() == [12, 16, 20]
    assert FrameSampling(4, "uniform").indices(0).tolist() == [0, 0, 0, 0]
    assert FrameSampling(4, "uniform").indices(9).tolist() == [0, 3, 6, 9]
    assert FrameSampling(3, "uniform").indices(5).tolist() == [0, 3, 5]  # 2.5 rounds half up
    for strategy in ("last", "strided", "uniform"):
        assert FrameSampling(1, strategy, stride=3).indices(7).tolist() == [7]  # one frame: the current one
    assert (FrameSampling(4).history, FrameSampling(3, "strided", stride=4).history, FrameSampling(3, "uniform").history) == (4, 9, None)


def test_batch_indices_match_indices_and_evaluate_uses_them() -> None:
    for sampling in (FrameSampling(5), FrameSampling(4, "strided", stride=3), FrameSampling(6, "uniform")):
        t = np.arange(300)
        expected = np.stack([sampling.indices(int(i)) for i in t])
        assert np.array_equal(sampling.batch_indices(t), expected)
        assert np.array_equal(frame_windows(300, sampling), expected)
        assert (expected <= t[:, None]).all() and (expected[:, -1] == t).all()  # causal, current frame last


@pytest.mark.parametrize("bad", [dict(frames=0), dict(strategy="random"), dict(stride=0)])
def test_bad_sampling_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="window|strategy|stride"):
        FrameSampling(**{"frames": 3, **bad})


@pytest.mark.parametrize("ops", ["numpy", "torch"])
@pytest.mark.parametrize("sampling", [FrameSampling(3), FrameSampling(3, "strided", stride=5),
                                      FrameSampling(4, "uniform")], ids=["last", "strided", "uniform"])
def test_online_windows_are_the_training_rule(ops: str, sampling: FrameSampling) -> None:
    # Each env's observation is its frame number, so every window the model receives must be
    # exactly sampling.indices(current frame): across episode ends, restarts (the reset frame's
    # window, as PBRS asks for it), envs that end at different times and episodes long enough
    # (150 frames) to outgrow the uniform history's first allocation.
    spec = ModelSpec({"t": InputSpec((1,), "float32")}, output="progress", **sampling.spec_fields())
    seen: list[np.ndarray] = []

    def record(batch):
        seen.append(np.asarray(batch["t"])[..., 0].astype(np.int64))
        return np.zeros(len(seen[-1]))

    model = CallableRewardModel(record, spec)
    feed = ModelFeed(model, 3, NumpyOps() if ops == "numpy" else TorchOps("cpu"))

    def frames(t):
        arr = np.asarray(t, np.float32)[:, None]
        return {"t": arr if ops == "numpy" else torch.as_tensor(arr)}

    def mask(m):
        return m if ops == "numpy" else torch.as_tensor(m)

    lengths = [np.array(x) for x in ([150, 7, 40], [3, 150, 12], [20, 2, 150])]
    t, episode = np.zeros(3, np.int64), np.zeros(3, np.int64)
    feed.begin(frames(t))
    for _ in range(320):
        t += 1
        ended = t >= np.array([lengths[int(e) % 3][i] for i, e in enumerate(episode)])
        feed.evaluate(frames(t), ended=mask(ended), restart_frames=frames(np.zeros(3)), want_restart_values=True)
        t[ended], episode[ended] = 0, episode[ended] + 1
    rows = np.concatenate(seen)
    assert len(rows) > 960 and rows[:, -1].max() == 150
    assert np.array_equal(rows, sampling.batch_indices(rows[:, -1]))


def test_checkpoint_carries_the_sampling_and_refits_keep_it(tmp_path) -> None:
    # (The CLI's --window/--frame-sampling/--stride: tests/test_agents.py::test_train_reward_cli_fits_every_kind...)
    from reward_wrappers import load_reward_model
    from reward_wrappers.base import SwappableModel
    from tests.test_progress import reach_trajectories
    from trainers import fit_classifier

    strided = FrameSampling(3, "strided", stride=2)
    path = fit_classifier(reach_trajectories(16), tmp_path / "clf.pt", inputs=("state",), window=strided, epochs=1,
                          steps_per_epoch=2, device="cpu", progress=False)
    model = load_reward_model(path)
    assert model.spec.frame_sampling == strided
    refit = fit_classifier(reach_trajectories(16, seed=1), tmp_path / "refit.pt", init=model, epochs=1, steps_per_epoch=2,
                           device="cpu", progress=False)
    assert load_reward_model(refit).spec.frame_sampling == strided
    last = CallableRewardModel(lambda b: np.zeros(len(b["state"])), ModelSpec(model.spec.inputs, window=3))
    with pytest.raises(ValueError, match="same frames"):
        SwappableModel(model).swap(last)
