"""Image reward models on any camera: non-square, small and large generated images fit, save, load
and run in a wrapper (learning quality at these sizes: benchmarks/image_sizes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reward_wrappers import load_reward_model
from reward_wrappers.models.encoders import ResNet10
from tests.fake_trajectories import FakeTrajectory
from trainers import fit_classifier, fit_progress
from trainers.data import shift_pad
from trainers.evaluate import predict_trajectory


def moving_dot(shape: tuple[int, int], n: int = 12, seed: int = 0) -> list[FakeTrajectory]:
    """A 2x2 dot on a dark background; even episodes walk it to the bottom-right corner (success
    once there), odd ones leave it wandering near the start."""
    h, w = shape
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(8, 12))
        if i % 2 == 0:
            path = np.linspace([1, 1], [h - 3, w - 3], length + 1)
        else:
            path = np.clip(np.array([2, 2]) + np.cumsum(rng.integers(-1, 2, (length + 1, 2)), axis=0), 0, [h - 3, w - 3])
        rgb = np.full((length + 1, h, w, 3), 20, np.uint8)
        for t, (y, x) in enumerate(path.astype(int)):
            rgb[t, y : y + 2, x : x + 2] = 230
        labels = np.zeros(length + 1, np.float32)
        if i % 2 == 0:
            labels[-2:] = 1.0
        out.append(FakeTrajectory({"rgb": rgb}, labels, np.zeros(length, np.float32), f"fake/{i:03d}", f"t{i:03d}"))
    return out


@pytest.mark.parametrize("shape", [(24, 40), (64, 64), (128, 128)], ids=["24x40", "64x64", "128x128"])
def test_classifier_and_progress_fit_any_image_size(tmp_path, shape) -> None:
    data = moving_dot(shape)
    common = dict(inputs=("rgb",), epochs=1, steps_per_epoch=2, batch_size=8, device="cpu", progress=False)
    for path in (fit_classifier(data, tmp_path / "clf.pt", **common), fit_progress(data, tmp_path / "prog.pt", window=2, **common)):
        model = load_reward_model(path)
        assert model.spec.inputs["rgb"].shape == (*shape, 3)
        values = predict_trajectory(model, data[0])
        assert values.shape == (len(data[0].labels),) and np.isfinite(values).all()


@pytest.mark.parametrize("shape", [(24, 40), (64, 64), (128, 128)], ids=["24x40", "64x64", "128x128"])
def test_resnet10_builds_for_any_image_size(shape) -> None:
    import torch

    net = ResNet10(3, shape, out_dim=16).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, *shape)).shape == (2, 16)


def test_random_shift_scales_with_the_image() -> None:
    # DrQ's 4 pixels at 64x64 would move a 24-pixel-high image's dot by a sixth of its height.
    assert (shift_pad(24, 40), shift_pad(64, 64), shift_pad(128, 128)) == (2, 4, 8)
