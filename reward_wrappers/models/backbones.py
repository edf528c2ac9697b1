"""Frozen image backbones that turn frames into embeddings, with an identity checkpoints record.

A :class:`Backbone` maps ``uint8`` images ``(N, H, W, C)`` to float32 embeddings ``(N, D)``,
gradient-free (frames scaled to ``[0, 1]``, channels first, as this project's own encoders read
them), always in chunks of exactly ``batch_rows`` frames (the last one padded): a CPU
convolution's result depends on the batch size it runs at (between batches of 1 and 256, 0.04 %
of float16 values moved by one step for the small CNN, 0.7-0.9 % for ResNet-10; measured), so fixed chunks make an embedding the same
whether ``rewardswap embed`` computed it among 256 recorded frames or the wrapper among 8 envs. Its ``identity`` is its name plus a hash of its weights: ``rewardswap
embed`` writes it beside the embeddings it stores, the trainers copy it into the checkpoint, and
the online wrapper (:class:`reward_wrappers.embedding.EmbedObservation`) refuses a backbone
whose identity differs from the one the model was fitted on.

Sources (:func:`load_backbone`); no weights are ever downloaded, a missing file is an error
naming it:

* any ``torch.nn.Module`` passed from Python (``Backbone(module, name=...)``);
* ``"torchscript:PATH"``: a TorchScript file (``torch.jit.save``); no pickle is read;
* ``"torchvision:ARCH@WEIGHTS"`` / ``"timm:ARCH@WEIGHTS"``: an architecture built with random
  weights, then a local state-dict file loaded with ``weights_only=True`` (the classifier head
  removed, so the output is the pooled features);
* ``"rewardswap:CHECKPOINT"`` (``#KEY`` to pick an image key): the image encoder of a reward
  model this project fitted, e.g. a success classifier's CNN.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 3, 8))
>>> backbone = Backbone(net, name="tiny")
>>> backbone(np.zeros((2, 4, 4, 3), np.uint8)).shape, backbone.identity.startswith("tiny:")
((2, 8), True)
"""

from __future__ import annotations

import hashlib
import io
import pathlib

import numpy as np
import torch

#: Dtype embeddings are stored in (buffers) and rounded to online, so both sides read the same values.
EMBEDDING_DTYPE = np.float16


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's parameters and buffers, by name, in float32 bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class Backbone:
    """A frozen module from images to embeddings; see the module docstring."""

    def __init__(self, module: torch.nn.Module, *, name: str, device: str | torch.device = "cpu",
                 source: str | None = None, batch_rows: int = 8) -> None:
        if int(batch_rows) < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        self.batch_rows = int(batch_rows)
        self.module = module.to(device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.name = name
        self.device = torch.device(device)
        self.source = source or name
        self.identity = f"{name}:{weights_hash(self.module)}"

    @torch.inference_mode()
    def embed_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 tensor -> ``(N, D)`` float32 tensor on the backbone's device."""
        # Contiguous NCHW whatever the input's strides: a channels-last view takes another kernel.
        x = images.to(self.device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        n, rows = x.shape[0], self.batch_rows
        if n % rows:
            x = torch.cat([x, x.new_zeros(rows - n % rows, *x.shape[1:])])
        out = torch.cat([self.module(x[start : start + rows]) for start in range(0, len(x), rows)])[:n]
        return out.reshape(n, -1).float()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, C)`` uint8 -> ``(N, D)`` float32 numpy."""
        images = np.asarray(images)
        if not images.flags.writeable:  # torch warns on (and must not write into) read-only memory maps
            images = images.copy()
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"backbone {self.name!r} takes uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
        return self.embed_tensor(torch.from_numpy(np.ascontiguousarray(images))).cpu().numpy()

    def __repr__(self) -> str:
        return f"Backbone({self.identity}, source={self.source!r})"


def _existing(path: str, what: str) -> pathlib.Path:
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist (weights are never downloaded: give a local file)")
    return p


def _library_model(library: str, spec: str) -> torch.nn.Module:
    arch, sep, weights = spec.partition("@")
    if not sep or not arch or not weights:
        raise ValueError(f"{library}: expects ARCH@WEIGHTS_FILE (e.g. {library}:resnet18@resnet18.pth), got {spec!r}")
    path = _existing(weights, f"{library} weights file")
    try:
        if library == "torchvision":
            import torchvision.models as models

            net = models.get_model(arch, weights=None)
        else:
            import timm

            net = timm.create_model(arch, pretrained=False)
    except ImportError:
        raise ValueError(f"{library}:{spec} needs the {library} package: pip install {library}") from None
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    # Pooled features, not class scores: drop the classification layer.
    if library == "torchvision" and hasattr(net, "fc"):
        net.fc = torch.nn.Identity()
    elif library == "timm" and hasattr(net, "reset_classifier"):
        net.reset_classifier(0)
    return net


def _rewardswap_encoder(spec: str) -> tuple[torch.nn.Module, str]:
    from reward_wrappers.models.checkpoint import load_reward_model

    path, _, key = spec.partition("#")
    model = load_reward_model(_existing(path, "reward-model checkpoint"))
    net = getattr(model.net, "trunk", model.net)  # a progress model's encoders sit in its trunk
    image_keys = sorted(getattr(net, "image_keys", ()))
    if not image_keys:
        raise ValueError(f"rewardswap:{path} reads no image key (its inputs: {list(model.spec.inputs)}); pick an image model")
    key = key or image_keys[0]
    if key not in image_keys:
        raise ValueError(f"rewardswap:{path} has no image encoder for {key!r}; it has {image_keys}")
    return net.encoders[key], f"rewardswap-{pathlib.Path(path).stem}-{key}"


def load_backbone(source: str | torch.nn.Module | Backbone, *, device: str | torch.device = "cpu",
                  name: str | None = None, batch_rows: int = 8) -> Backbone:
    """A :class:`Backbone` from a module, or a source string (see the module docstring)."""
    if isinstance(source, Backbone):
        return source
    if isinstance(source, torch.nn.Module):
        return Backbone(source, name=name or type(source).__name__, device=device, batch_rows=batch_rows)
    kind, sep, rest = str(source).partition(":")
    if not sep or not rest:
        raise ValueError(f"backbone {source!r}: expected torchscript:PATH, torchvision:ARCH@WEIGHTS, "
                         "timm:ARCH@WEIGHTS or rewardswap:CHECKPOINT[#KEY]")
    if kind == "torchscript":
        path = _existing(rest, "TorchScript file").resolve()  # recorded absolute: train-agent may run elsewhere
        return Backbone(torch.jit.load(str(path), map_location="cpu"), name=name or path.stem, device=device,
                        source=f"torchscript:{path}", batch_rows=batch_rows)
    if kind in ("torchvision", "timm"):
        arch, _, weights = rest.partition("@")
        return Backbone(_library_model(kind, rest), name=name or f"{kind}-{arch}", device=device,
                        source=f"{kind}:{arch}@{pathlib.Path(weights).expanduser().resolve()}", batch_rows=batch_rows)
    if kind == "rewardswap":
        module, default_name = _rewardswap_encoder(rest)
        path, hash_, key = rest.partition("#")
        return Backbone(module, name=name or default_name, device=device, batch_rows=batch_rows,
                        source=f"rewardswap:{pathlib.Path(path).expanduser().resolve()}{hash_}{key}")
    raise ValueError(f"backbone {source!r}: unknown source {kind!r}; expected torchscript, torchvision, timm or rewardswap")


def to_stored(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as stored and as the online wrapper hands them on: float16 (see EMBEDDING_DTYPE)."""
    return np.asarray(embeddings).astype(EMBEDDING_DTYPE)


__all__ = ["Backbone", "EMBEDDING_DTYPE", "load_backbone", "to_stored", "weights_hash"]
