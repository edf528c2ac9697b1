"""Self-describing reward-model checkpoints.

A checkpoint is a ``torch.save`` of a dict holding only plain Python types and tensors:
``format``, ``version``, ``arch`` (architecture name and keyword arguments), ``spec`` (inputs,
window, output kind, threshold), ``state_dict`` (weights and normalisation buffers) and
``metadata`` (how it was trained, metrics). :func:`load_reward_model` rebuilds the model from it
alone, with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.

>>> import tempfile, os, numpy as np
>>> from reward_wrappers.base import InputSpec, ModelSpec
>>> from reward_wrappers.networks import TorchRewardModel
>>> model = TorchRewardModel.build(ModelSpec(inputs={"state": InputSpec((3,), "float32")}), hidden=16)
>>> path = save_reward_model(model, os.path.join(tempfile.mkdtemp(), "m.pt"))
>>> x = {"state": np.ones((2, 3), np.float32)}
>>> bool(np.allclose(load_reward_model(path).predict(x), model.predict(x)))
True
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

import torch

from reward_wrappers.base import ModelSpec
from reward_wrappers.networks import TorchRewardModel, build_network

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_reward_model(path: PathLike, device: str | torch.device = "cpu") -> TorchRewardModel:
    """Rebuild a reward model from a checkpoint written by :func:`save_reward_model`.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for
    anything that is not a RewardSwap checkpoint of a supported version.
    """
    path = pathlib.Path(path)
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
    if int(payload.get("version", 0)) > VERSION:
        raise ValueError(f"{path} has checkpoint version {payload['version']}; this rewardswap reads up to {VERSION}: upgrade")
    missing = [k for k in ("arch", "spec", "state_dict") if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks checkpoint keys {missing}")
    spec = ModelSpec.from_dict(payload["spec"])
    arch = payload["arch"]
    net = build_network(arch["name"], spec, **arch.get("kwargs", {}))
    net.load_state_dict(payload["state_dict"])
    net.to(device)
    return TorchRewardModel(net, spec, arch, payload.get("metadata", {}))
