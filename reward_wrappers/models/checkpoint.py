"""Self-describing reward-model checkpoints.

A checkpoint is a ``torch.save`` of a dict holding only plain Python types and tensors:
``format``, ``version``, ``arch`` (architecture name and keyword arguments), ``spec`` (inputs,
window, output kind, threshold), ``state_dict`` (weights and normalisation buffers) and
``metadata`` (how it was trained, metrics). :func:`load_reward_model` rebuilds the model from it
alone, with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.

>>> import tempfile, os, numpy as np
>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> from reward_wrappers.models.networks import TorchRewardModel
>>> model = TorchRewardModel.build(ModelSpec(inputs={"state": InputSpec((3,), "float32")}), hidden=16)
>>> path = save_reward_model(model, os.path.join(tempfile.mkdtemp(), "m.pt"))
>>> x = {"state": np.ones((2, 3), np.float32)}
>>> bool(np.allclose(load_reward_model(path).predict(x), model.predict(x)))
True
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import torch

from collectors.atomic import write_atomic
from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.networks import TorchRewardModel, build_network

FORMAT = "rewardswap-reward-model"
VERSION = 1

PathLike = str | os.PathLike


def save_reward_model(model: TorchRewardModel, path: PathLike, metadata: dict[str, Any] | None = None) -> pathlib.Path:
    """Write ``model`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": {"name": model.arch["name"], "kwargs": dict(model.arch.get("kwargs", {}))},
        "spec": model.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "metadata": {**model.metadata, **(metadata or {})},
    }
    try:
        return write_atomic(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a bare RuntimeError
        raise OSError(f"could not write the checkpoint {path} ({type(exc).__name__}: {exc}); "
                      "nothing was written there") from exc


def load_reward_model(path: PathLike, device: str | torch.device = "cpu") -> TorchRewardModel:
    """Rebuild a reward model from a checkpoint written by :func:`save_reward_model`.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for
    anything that is not a RewardSwap checkpoint of a supported version.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; a reward model checkpoint is a .pt file (from `rewardswap train-reward`)")
    if not path.is_file():
        raise FileNotFoundError(f"reward model checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path} could not be read as a RewardSwap checkpoint with weights_only=True ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it may be corrupt or not written by rewardswap"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a RewardSwap reward-model checkpoint (no format={FORMAT!r} key)")
    version = payload.get("version")
    if type(version) is not int or version < 1:
        raise ValueError(f"{path}: checkpoint version must be a positive integer, got {version!r}")
    if version > VERSION:
        raise ValueError(f"{path} has checkpoint version {version}; this rewardswap reads up to {VERSION}: upgrade")
    missing = [k for k in ("arch", "spec", "state_dict") if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks checkpoint keys {missing}")
    arch, state = payload["arch"], payload["state_dict"]
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs", {}), dict):
        raise ValueError(f"{path}: 'arch' must be {{'name': str, 'kwargs': dict}}, got {arch!r:.200}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors")
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: 'metadata' must be a dict, got {type(metadata).__name__}")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        check_shapes_before_allocating(arch, spec, state)
        net = build_network(arch["name"], spec, **arch.get("kwargs", {}))
        net.load_state_dict(state)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from None
    net.to(device)
    return TorchRewardModel(net, spec, arch, metadata)


def check_shapes_before_allocating(arch: dict[str, Any], spec: ModelSpec, state: dict[str, torch.Tensor]) -> None:
    """Build the network on torch's ``meta`` device (shapes, no memory) and compare its tensors with
    the stored ones: arch kwargs that do not match the weights the file holds (``hidden=10**7``
    beside a small state dict) are refused before anything the size of the claim is allocated."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_network(arch["name"], spec, **arch.get("kwargs", {})).state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != stored:
        wrong = sorted(k for k in shapes.keys() | stored.keys() if shapes.get(k) != stored.get(k))[:5]
        raise ValueError(f"the architecture {arch['name']!r} with kwargs {arch.get('kwargs', {})} does not match the "
                         f"stored weights (first differing tensors: "
                         + ", ".join(f"{k}: built {shapes.get(k)} stored {stored.get(k)}" for k in wrong) + ")")
