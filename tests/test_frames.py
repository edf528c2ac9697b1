"""Frame sampling of video reward models: the rule by hand, the online feed against it, and
checkpoints and the CLI that carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_wrappers.models.base import CallableRewardModel, InputSpec, ModelSpec
from reward_wrappers.cores.feed import ModelFeed
from reward_wrappers.models.frames import FrameSampling
from reward_wrappers.cores.ops import NumpyOps, TorchOps
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
        assert FrameSampling(1, strategy, stride=3 if strategy == "strided" else 1).indices(7).tolist() == [7]  # one frame: the current one
    assert (FrameSampling(4).history, FrameSampling(3, "strided", stride=4).history, FrameSampling(3, "uniform").history) == (4, 9, None)


def test_batch_indices_match_indices_and_evaluate_uses_them() -> None:
    for sampling in (FrameSampling(5), FrameSampling(4, "strided", stride=3), FrameSampling(6, "uniform")):
        t = np.arange(300)
        expected = np.stack([sampling.indices(int(i)) for i in t])
        assert np.array_equal(sampling.batch_indices(t), expected)
        assert np.array_equal(frame_windows(300, sampling), expected)
        assert (expected <= t[:, None]).all() and (expected[:, -1] == t).all()  # causal, current frame last


@pytest.mark.parametrize("bad", [dict(frames=0), dict(strategy="random"), dict(stride=0),
                                 dict(strategy="last", stride=4), dict(strategy="uniform", stride=2)])
def test_bad_sampling_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="window|strategy|stride"):
        FrameSampling(**{"frames": 3, "strategy": "strided", **bad})


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
    from reward_wrappers.models.base import SwappableModel
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


@pytest.mark.parametrize("ops", ["numpy", "torch"])
@pytest.mark.parametrize("mode", ["fresh", "ended", "begin"])
@pytest.mark.parametrize("sampling", [FrameSampling(1), FrameSampling(3), FrameSampling(3, "strided", stride=4),
                                      FrameSampling(4, "uniform")], ids=["one", "last", "strided", "uniform"])
def test_windows_hold_only_the_current_episodes_frames(ops: str, mode: str, sampling: FrameSampling) -> None:
    # Frames stamped (env, episode, t): a window holding a frame of another env or of the previous
    # episode, or lagging a step, shows. The three ways an episode restarts: "fresh" (next-step
    # autoreset: the step's frame is a reset frame), "ended" (same-step: restart frames handed over
    # after the step's value) and begin(mask) (some envs reset by hand).
    n, rng = 5, np.random.default_rng(0)
    spec = ModelSpec({"t": InputSpec((3,), "float32")}, output="progress", **sampling.spec_fields())
    seen: list[np.ndarray] = []

    def record(batch):
        seen.append(np.asarray(batch["t"]).astype(np.int64))
        return np.zeros(len(seen[-1]))

    feed = ModelFeed(CallableRewardModel(record, spec), n, NumpyOps() if ops == "numpy" else TorchOps("cpu"))
    wrap = (lambda a: a) if ops == "numpy" else torch.as_tensor  # noqa: E731
    episode, t = np.zeros(n, np.int64), np.zeros(n, np.int64)

    def frames(episode, t):
        return {"t": wrap(np.stack([np.arange(n), episode, t], 1).astype(np.float32))}

    def expected(i: int, episode=episode, t=t) -> np.ndarray:
        idx = sampling.indices(int(t[i]))
        rows = np.stack([np.full(len(idx), i), np.full(len(idx), episode[i]), idx], 1)
        return rows[0] if sampling.frames == 1 else rows

    feed.begin(frames(episode, t))
    pending = np.zeros(n, bool)
    for _ in range(240):
        seen.clear()
        if mode == "fresh":
            fresh = pending.copy()
            t, episode = np.where(fresh, 0, t + 1), np.where(fresh, episode + 1, episode)
            feed.evaluate(frames(episode, t), fresh=wrap(fresh))
            pending = (rng.random(n) < 0.05) & ~fresh
        elif mode == "ended":
            t = t + 1
            ended = rng.random(n) < 0.05
            restart_episode, restart_t = np.where(ended, episode + 1, episode), np.where(ended, 0, t)
            feed.evaluate(frames(episode, t), ended=wrap(ended), restart_frames=frames(restart_episode, restart_t),
                          want_restart_values=True)
            got = np.concatenate(seen)
            for row, i in enumerate(np.flatnonzero(ended)):
                assert np.array_equal(got[n + row], expected(i, restart_episode, restart_t))
        else:
            t = t + 1
            feed.evaluate(frames(episode, t))
        got = np.concatenate(seen)
        for i in range(n):
            assert np.array_equal(got[i], expected(i, episode, t)), (mode, i)
        if mode == "ended":
            episode, t = restart_episode, restart_t
        if mode == "begin" and (mask := rng.random(n) < 0.1).any():
            episode, t = np.where(mask, episode + 1, episode), np.where(mask, 0, t)
            seen.clear()
            feed.begin(frames(episode, t), wrap(mask))
            got = np.concatenate(seen)
            for row, i in enumerate(np.flatnonzero(mask)):
                assert np.array_equal(got[row], expected(i, episode, t))
