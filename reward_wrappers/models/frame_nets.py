"""Base classes of image (single-frame) and video (multi-frame) reward networks.

Both read a batch laid out as in :mod:`reward_wrappers.models.base` and encode every frame with the same
per-key encoders (:func:`~reward_wrappers.models.encoders.build_frame_encoders`: a CNN or ResNet-10 per
image key, an MLP per state key, features concatenated over keys). What differs is what a
subclass writes:

* :class:`ImageRewardNet`: ``score_frame(features (B, F)) -> (B, C)``; the spec reads one frame.
* :class:`VideoRewardNet`: ``score(features (B, window, F)) -> (B, C)``; which frames fill the
  window is the spec's :class:`~reward_wrappers.models.frames.FrameSampling` (last, strided, uniform),
  applied the same way in training and online.

Register a subclass with :func:`~reward_wrappers.models.registry.register_architecture` and any
checkpoint naming it loads and runs in every wrapper. The built-in ``reward_net``
(:class:`~reward_wrappers.models.networks.RewardNet`, behind the classifier and preference kinds and the
progress kind's trunk) is a :class:`VideoRewardNet` whose ``score`` is an MLP over the
concatenated frames.

>>> import torch
>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> class MeanOverTime(VideoRewardNet):
...     def __init__(self, spec, **kwargs):
...         super().__init__(spec, **kwargs)
...         self.out = torch.nn.Linear(self.feature_dim, 1)
...     def score(self, features):
...         return self.out(features.mean(dim=1))
>>> spec = ModelSpec({"rgb": InputSpec((24, 40, 3), "uint8")}, window=4, sampling="uniform")
>>> MeanOverTime(spec, feature_dim=16)({"rgb": torch.zeros(2, 4, 24, 40, 3, dtype=torch.uint8)}).shape
torch.Size([2, 1])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.encoders import StateMLP, build_frame_encoders, is_image_input

TensorBatch = Mapping[str, torch.Tensor]


class VideoRewardNet(nn.Module):
    """Per-frame encoders shared over the window; subclasses fuse the frames in :meth:`score`."""

    def __init__(self, spec: ModelSpec, *, encoder: str = "cnn", hidden: int = 256, feature_dim: int = 128,
                 cnn_width: int = 32) -> None:
        super().__init__()
        self.keys = list(spec.inputs)
        self.window = spec.window
        self.frame_sampling = spec.frame_sampling
        self.image_keys = {k for k, v in spec.inputs.items() if is_image_input(v.shape, v.dtype)}
        self.encoders = build_frame_encoders(spec, encoder=encoder, hidden=hidden, feature_dim=feature_dim, cnn_width=cnn_width)
        #: Feature width of each key (in ``keys`` order) and of one whole frame.
        self.key_dims = [self.encoders[k].out_dim for k in self.keys]
        self.feature_dim = sum(self.key_dims)

    def encode_frames(self, batch: TensorBatch) -> torch.Tensor:
        """Features ``(B, window, feature_dim)``: every frame of every key through its encoder."""
        features = []
        for key in self.keys:
            x = batch[key]
            batch_size = x.shape[0]
            frames = x.reshape(batch_size * self.window, *x.shape[(2 if self.window > 1 else 1):])
            if key in self.image_keys:
                frames = frames.permute(0, 3, 1, 2).float().div_(255.0)  # uint8 HWC -> float CHW in [0, 1]
            features.append(self.encoders[key](frames).reshape(batch_size, self.window, -1))
        return torch.cat(features, dim=2)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, window, feature_dim)`` -> ``(B, n_outputs)``; the model's output in column 0."""
        raise NotImplementedError(f"{type(self).__name__} must implement score(features)")

    def forward(self, batch: TensorBatch) -> torch.Tensor:
        return self.score(self.encode_frames(batch))

    def set_state_normalization(self, key: str, mean: np.ndarray, std: np.ndarray) -> None:
        """Store a state key's mean/std in its encoder (part of the ``state_dict``, so of the checkpoint)."""
        enc = self.encoders[key]
        if not isinstance(enc, StateMLP):
            raise TypeError(f"input {key!r} is not a state input")
        enc.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        enc.std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))


class ImageRewardNet(VideoRewardNet):
    """One frame per prediction; subclasses write :meth:`score_frame`."""

    def __init__(self, spec: ModelSpec, **kwargs: int | str) -> None:
        if spec.window != 1:
            raise ValueError(f"{type(self).__name__} reads one frame, but the spec's window is {spec.window}: "
                             "subclass VideoRewardNet for multi-frame models")
        super().__init__(spec, **kwargs)  # type: ignore[arg-type]

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.score_frame(features[:, 0])

    def score_frame(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim)`` -> ``(B, n_outputs)``; the model's output in column 0."""
        raise NotImplementedError(f"{type(self).__name__} must implement score_frame(features)")
