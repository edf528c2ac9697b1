"""Reward-model objects the wrappers call: the float32 numpy copy of small state networks (the
per-step inference path) against torch, and checkpoint loading that never unpickles."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pytest
import torch

from reward_wrappers import InputSpec, ModelSpec, TorchRewardModel

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------
# numpy copies of state networks (the per-step inference path)
# ----------------------------------------------------------------------------------------------
def _two_key_spec(window: int, output: str) -> ModelSpec:
    return ModelSpec(
        inputs={"state": InputSpec((5,), "float32"), "proprio": InputSpec((3,), "float32")}, window=window, output=output
    )


def _state_batch(spec: ModelSpec, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lead = (n,) if spec.window == 1 else (n, spec.window)
    return {k: (rng.normal(size=(*lead, *v.shape)) * 3.0 + 1.0).astype(np.float32) for k, v in spec.inputs.items()}


def _torch_columns(model: TorchRewardModel, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model.net({k: torch.as_tensor(v) for k, v in batch.items()}).float().numpy()


def _normalise(model: TorchRewardModel, batch: Mapping[str, np.ndarray]) -> None:
    """Non-trivial stored normalisation (a near-constant feature gets the clamped std)."""
    net = model.net.trunk if hasattr(model.net, "trunk") else model.net
    for key, x in batch.items():
        flat = x.reshape(-1, x.shape[-1])
        std = flat.std(axis=0)
        std[0] = 0.0
        net.set_state_normalization(key, flat.mean(axis=0), std)


NUMPY_NETS = {
    "classifier": lambda w: TorchRewardModel.build(_two_key_spec(w, "logit"), hidden=32, feature_dim=16),
    "classifier_default_widths": lambda w: TorchRewardModel.build(_two_key_spec(w, "logit")),
    "progress": lambda w: TorchRewardModel.build(_two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8),
    "progress_ensemble": lambda w: TorchRewardModel.build(
        _two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8, ensemble=4
    ),
    "stages_ensemble": lambda w: TorchRewardModel.build(
        _two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8, ensemble=3, stage_priors=[0.2, 0.5, 0.3]
    ),
}


@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("name", list(NUMPY_NETS))
def test_numpy_copy_matches_torch_on_every_output_column(name: str, window: int) -> None:
    torch.manual_seed(0)
    model = NUMPY_NETS[name](window)
    batch = _state_batch(model.spec, min(8, model.numpy_max_rows // window))
    _normalise(model, batch)
    forward = model.numpy_forward(batch)
    assert forward is not None
    expected = _torch_columns(model, batch)
    got = forward(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict(batch), expected[:, 0], rtol=1e-5, atol=1e-5)
    if model.spec.output == "progress" and name != "progress":
        model.spec = ModelSpec(**{**model.spec.__dict__, "has_confidence": True})
        value, confidence = model.predict_with_confidence(batch)
        np.testing.assert_allclose(value, expected[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(confidence, expected[:, 1], rtol=1e-5, atol=1e-5)


def test_numpy_copy_follows_training_and_every_weight_change() -> None:
    """The numpy copy never answers from stale weights, however the network changes."""
    torch.manual_seed(0)
    model = TorchRewardModel.build(_two_key_spec(2, "logit"), hidden=16, feature_dim=8)
    batch = _state_batch(model.spec, 6)

    def agrees() -> None:
        assert model.numpy_forward(batch) is not None
        np.testing.assert_allclose(model.predict(batch), _torch_columns(model, batch)[:, 0], rtol=1e-5, atol=1e-5)

    agrees()
    before = model.predict(batch)
    # what the trainers do: train mode, optimiser steps in place, then predict in eval mode
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=0.05)
    model.net.train()
    for _ in range(3):
        loss = model.net({k: torch.as_tensor(v) for k, v in batch.items()}).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.net.eval()
    assert not np.allclose(model.predict(batch), before)
    agrees()
    _normalise(model, batch)  # new normalisation buffers (copy_ in place)
    agrees()
    other = TorchRewardModel.build(model.spec, hidden=16, feature_dim=8)
    model.net.load_state_dict(other.net.state_dict())  # early stopping's "restore the best"
    agrees()
    model.net.load_state_dict(TorchRewardModel.build(model.spec, hidden=16, feature_dim=8).net.state_dict(), assign=True)
    agrees()
    head = model.net.head[0]
    head.weight.data = torch.randn_like(head.weight)  # re-allocated storage, same Parameter
    agrees()
    model.net.head[2] = torch.nn.Linear(16, 1)  # a replaced module
    agrees()
    with torch.no_grad():
        model.net.encoders["state"].net[0].bias.add_(1.0)
    agrees()
    model.net.double()  # not float32 any more: torch answers, in float64
    assert model.numpy_forward(batch) is None
    np.testing.assert_allclose(model.predict(batch), _torch_columns(model, batch)[:, 0], rtol=1e-6)


def test_numpy_copy_only_for_small_state_batches() -> None:
    torch.manual_seed(0)
    image_spec = ModelSpec(inputs={"rgb": InputSpec((16, 16, 3), "uint8"), "state": InputSpec((3,), "float32")})
    image_model = TorchRewardModel.build(image_spec, encoder="cnn", hidden=16)
    assert image_model.numpy_forward() is None  # an image encoder: torch only
    model = TorchRewardModel.build(_two_key_spec(2, "logit"))  # default widths
    widest = 2 * 2 * 128 * 256  # the head's first layer: 2 keys x 2 frames x 128 features -> 256
    assert model.numpy_max_rows == TorchRewardModel.numpy_max_layer_macs // widest == 6
    assert model.numpy_forward(_state_batch(model.spec, 3)) is not None  # 3 envs x window 2
    big = _state_batch(model.spec, 4)
    assert model.numpy_forward(big) is None  # larger batches (trainers' evaluation) stay on torch
    np.testing.assert_allclose(model.predict(big), _torch_columns(model, big)[:, 0], rtol=1e-5, atol=1e-5)
    model.numpy_max_layer_macs = 0
    assert model.numpy_forward(_state_batch(model.spec, 1)) is None
    tensors = {k: torch.as_tensor(v) for k, v in _state_batch(model.spec, 4).items()}
    assert model.numpy_forward(tensors) is None


def test_model_pickles_after_predict() -> None:
    """SubprocVecEnv/spec round trips pickle the model; the numpy copy is rebuilt, not pickled."""
    import copy
    import pickle

    model = TorchRewardModel.build(_two_key_spec(1, "logit"), hidden=16)
    batch = _state_batch(model.spec, 4)
    expected = model.predict(batch)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        np.testing.assert_array_equal(clone.predict(batch), expected)
        with torch.no_grad():
            clone.net.head[0].bias.add_(1.0)  # the clone's copy follows the clone's weights only
        assert not np.allclose(clone.predict(batch), expected)
        np.testing.assert_array_equal(model.predict(batch), expected)


class _RunsCodeWhenUnpickled:
    """A pickle that creates ``marker`` when loaded: what an untrusted checkpoint could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_load_reward_model_never_unpickles_and_names_the_bad_file(tmp_path) -> None:
    from reward_wrappers import load_reward_model
    from reward_wrappers.models.checkpoint import FORMAT, VERSION

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _RunsCodeWhenUnpickled(str(marker))}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt could not be read .* weights_only=True"):
        load_reward_model(evil)
    assert not marker.exists()

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_reward_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt could not be read"):
        load_reward_model(garbage)
    cases = {
        "foreign.pt": ({"weights": torch.zeros(2)}, "not a RewardSwap reward-model checkpoint"),
        "future.pt": ({"format": FORMAT, "version": VERSION + 1}, f"version {VERSION + 1}.*upgrade"),
        "partial.pt": ({"format": FORMAT, "version": VERSION, "spec": {}}, r"lacks checkpoint keys \['arch', 'state_dict'\]"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            load_reward_model(tmp_path / name)
