"""Network architectures for reward models, and the model object the wrappers call.

Trainers fit these; wrappers run them. Every network reads a dict of tensors keyed as in
:class:`~reward_wrappers.models.base.ModelSpec` and returns ``(B, n_outputs)``. Images arrive as
``uint8`` ``(..., H, W, C)`` and are scaled inside the network; state inputs are normalised by
mean/std buffers that are part of the ``state_dict``, so a checkpoint carries its normalisation.

Encoders (``encoder=``, :mod:`reward_wrappers.models.encoders`): ``"cnn"`` (small and fast, the
default) or ``"resnet10"`` for images, an MLP for state keys. :class:`RewardNet` is a
:class:`~reward_wrappers.models.frame_nets.VideoRewardNet` (one frame: an image model) that fuses keys and
frames by concatenation.

>>> import numpy as np
>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> spec = ModelSpec(inputs={"state": InputSpec((6,), "float32")})
>>> model = TorchRewardModel.build(spec, encoder="cnn", hidden=32)
>>> model.predict({"state": np.zeros((4, 6), np.float32)}).shape
(4,)
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from reward_wrappers.models.base import Batch, BatchCheck, ModelSpec, check_finite
from reward_wrappers.models.encoders import StateMLP, numpy_layers, run_numpy_layers
from reward_wrappers.models.frame_nets import VideoRewardNet
from reward_wrappers.models.registry import architecture_class, register_architecture

TensorBatch = Mapping[str, torch.Tensor]
#: A float32 numpy copy of a network's ``forward``: numpy batch -> ``(B, n_outputs)`` array.
NumpyForward = Callable[[Batch], np.ndarray]


class RewardNet(VideoRewardNet):
    """Per-key encoders, fused by concatenation over keys and window frames, and an MLP head.

    A window of ``W`` frames is encoded frame by frame and the features concatenated, key by key
    in time order, so the head sees the causal history in a fixed layout. With ``W == 1`` it is
    a plain image (or state) model.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        encoder: str = "cnn",
        hidden: int = 256,
        feature_dim: int = 128,
        n_outputs: int = 1,
        cnn_width: int = 32,
    ) -> None:
        super().__init__(spec, encoder=encoder, hidden=hidden, feature_dim=feature_dim, cnn_width=cnn_width)
        self.head = nn.Sequential(nn.Linear(self.feature_dim * self.window, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def flatten(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, W, F)`` -> ``(B, W * F)`` key by key (each key's frames together), the head's layout."""
        return torch.cat([part.flatten(1) for part in features.split(self.key_dims, dim=2)], dim=1)

    def encode(self, batch: TensorBatch) -> torch.Tensor:
        """Features ``(B, fused_dim)`` for a batch laid out as in :mod:`reward_wrappers.models.base`."""
        return self.flatten(self.encode_frames(batch))

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(features))

    def numpy_encode(self) -> Optional[NumpyForward]:
        """A float32 numpy copy of :meth:`encode`; ``None`` unless every input is a state vector."""
        encoders = []
        for key in self.keys:
            encoder = self.encoders[key]
            forward = encoder.numpy_forward() if type(encoder) is StateMLP else None
            if forward is None:
                return None
            encoders.append((key, forward))
        window = self.window

        def encode(batch: Batch) -> np.ndarray:
            features = []
            for key, forward in encoders:
                x = batch[key]
                frames = x.reshape(x.shape[0] * window, x.shape[-1]) if window > 1 else x
                features.append(forward(frames).reshape(x.shape[0], -1))
            return features[0] if len(features) == 1 else np.concatenate(features, axis=1)

        return encode

    def numpy_forward(self) -> Optional[NumpyForward]:
        """A float32 numpy copy of :meth:`forward` (every output column); ``None`` if the network
        has an image encoder or anything but Linear/ReLU layers."""
        encode, head = self.numpy_encode(), numpy_layers(self.head)
        if encode is None or head is None:
            return None
        return lambda batch: run_numpy_layers(head, encode(batch))

register_architecture("reward_net", RewardNet)


def build_network(name: str, spec: ModelSpec, **kwargs: Any) -> nn.Module:
    """The registered architecture ``name`` (:mod:`reward_wrappers.models.registry`) built for ``spec``."""
    return architecture_class(name)(spec, **kwargs)


def batch_to_tensors(batch: Batch, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """numpy (or tensor) batch -> tensors on ``device``, dtypes preserved (images stay uint8)."""
    return {k: torch.as_tensor(np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v, device=device) for k, v in batch.items()}


class TorchRewardModel:
    """A fitted network with its spec: what wrappers call and checkpoints hold.

    ``predict`` takes and returns numpy; ``predict_torch`` keeps tensors on their device (for
    GPU-batched simulators). The output is the network's first column, interpreted per
    ``spec.output`` (a logit for classifiers).
    """

    #: ``predict`` runs a batch through the float32 numpy copy of the network (when it has one:
    #: state inputs, Linear/ReLU layers only) while every layer's product stays within this
    #: many multiply-adds (rows x in x out; 24 frames for the default 256/128 widths): numpy's
    #: OpenBLAS computes products that small on the calling thread, larger ones on its thread
    #: pool, measured 2-7x slower than torch on a busy 2-core machine. Larger batches
    #: (trainers' evaluation) and other networks use torch. 0 disables the numpy copy.
    numpy_max_layer_macs: int = 786_432

    def __init__(self, net: nn.Module, spec: ModelSpec, arch: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.spec = spec
        self.arch = arch
        self.metadata = dict(metadata or {})
        self._check = BatchCheck(spec, check_dtype=False)  # shapes, as predict always checked
        self._numpy: Optional[_NumpyCopy] = None

    def __getstate__(self) -> dict[str, Any]:
        # The numpy copy holds closures (not picklable) and is rebuilt on first use anyway.
        return {**self.__dict__, "_numpy": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_numpy", None)
        if "_check" not in self.__dict__:  # pickled before the per-layout check existed
            self._check = BatchCheck(self.spec, check_dtype=False)

    @classmethod
    def build(cls, spec: ModelSpec, arch_name: str = "reward_net", **arch_kwargs: Any) -> "TorchRewardModel":
        net = build_network(arch_name, spec, **arch_kwargs)
        return cls(net, spec, {"name": arch_name, "kwargs": arch_kwargs})

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device | str) -> "TorchRewardModel":
        self.net.to(device)
        self._numpy = None
        return self

    def numpy_forward(self, batch: Optional[Batch] = None) -> Optional[NumpyForward]:
        """The numpy copy of ``net.forward``, current with the network's weights; ``None`` if the
        network has none (or ``batch`` is too large for it, see ``numpy_max_layer_macs``, or
        holds tensors).

        The copy is made on first use and remade whenever any parameter or buffer of ``net`` was
        written in place (an optimiser step, ``load_state_dict``, new normalisation: their
        ``_version`` counters move), re-allocated (``.to()``, ``.data =``) or replaced by another
        tensor or module, so a model being trained never answers from stale weights.
        """
        if self.numpy_max_layer_macs <= 0:
            return None
        copy = self._numpy_copy()
        if copy.forward is None or batch is None:
            return copy.forward
        first = next(iter(batch.values()))
        if not isinstance(first, np.ndarray) or first.shape[0] * self.spec.window * copy.widest_layer > self.numpy_max_layer_macs:
            return None
        if len(batch) > 1 and not all(isinstance(v, np.ndarray) for v in batch.values()):
            return None
        return copy.forward

    def _numpy_copy(self) -> "_NumpyCopy":
        copy = self._numpy
        if copy is None or not copy.current():
            copy = self._numpy = _NumpyCopy(self.net)
        return copy

    @property
    def numpy_max_rows(self) -> int:
        """Largest batch (rows x window) ``predict`` runs through the numpy copy (0: none)."""
        copy = self._numpy_copy()
        return 0 if copy.forward is None else self.numpy_max_layer_macs // copy.widest_layer

    def predict_torch(self, batch: TensorBatch) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(batch)[:, 0].float()

    def predict(self, batch: Batch) -> np.ndarray:
        self._check(batch)
        forward = self.numpy_forward(batch)
        if forward is not None:
            return check_finite(forward(batch)[:, 0])
        out = self.predict_torch(batch_to_tensors(batch, self.device)).cpu().numpy()
        return check_finite(out)

    # Confidence hook: a network that outputs a confidence in [0, 1] names its column with a
    # class attribute ``CONFIDENCE_COLUMN`` (e.g. ensemble spread in
    # ``reward_wrappers.models.progress_networks.ProgressNet``) and the spec says ``has_confidence``.
    def _confidence_column(self) -> int:
        column = getattr(self.net, "CONFIDENCE_COLUMN", None)
        if not self.spec.has_confidence or column is None:
            raise ValueError(
                f"{self!r} has no confidence output (spec.has_confidence={self.spec.has_confidence}); "
                "fit it with a confidence ensemble (e.g. `rewardswap train-reward progress --ensemble 5`)"
            )
        return int(column)

    def predict_with_confidence_torch(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value, confidence)`` tensors of shape ``(B,)`` from one forward pass."""
        column = self._confidence_column()
        with torch.inference_mode():
            out = self.net(batch).float()
        return out[:, 0], out[:, column]

    def predict_confidence_torch(self, batch: TensorBatch) -> torch.Tensor:
        """Confidence ``(B,)`` tensor on the model's device (GPU-batched simulators)."""
        return self.predict_with_confidence_torch(batch)[1]

    def predict_with_confidence(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``(value, confidence)`` as float64 numpy ``(B,)``; confidence in ``[0, 1]``."""
        self._check(batch)
        column = self._confidence_column()
        forward = self.numpy_forward(batch)
        if forward is not None:
            out = forward(batch)
            value_np, confidence_np = out[:, 0], out[:, column]
        else:
            value, confidence = self.predict_with_confidence_torch(batch_to_tensors(batch, self.device))
            value_np, confidence_np = value.cpu().numpy(), confidence.cpu().numpy()
        return check_finite(value_np), check_finite(confidence_np, what="reward-model confidence")

    def predict_confidence(self, batch: Batch) -> np.ndarray:
        """Confidence ``(B,)`` in ``[0, 1]``; ``ValueError`` unless ``spec.has_confidence``."""
        return self.predict_with_confidence(batch)[1]

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.spec.inputs.items())
        return f"TorchRewardModel({self.arch['name']}, inputs=[{keys}], window={self.spec.window}, output={self.spec.output})"


_version = operator.attrgetter("_version")
_data_ptr = torch.Tensor.data_ptr


class _NumpyCopy:
    """A network's numpy forward (or ``None``) plus the fingerprint of the weights it copied.

    The fingerprint lists every slot of the module tree (each submodule, parameter and buffer,
    by its owner dict and name) with the object found there, and each tensor's version counter
    and data pointer. :meth:`current` compares them with C-level ``map`` calls (about a
    microsecond for a state MLP); any difference means the copy must be remade.
    """

    def __init__(self, net: nn.Module) -> None:
        dicts, names, objects = [], [], []
        for module in net.modules():
            for owner in (module._modules, module._parameters, module._buffers):
                for name, obj in owner.items():
                    dicts.append(owner)
                    names.append(name)
                    objects.append(obj)
        self._dicts, self._names, self._objects = dicts, names, objects
        self._ids = list(map(id, objects))  # the objects are kept alive here: no id is reused
        self._tensors = [o for o in objects if isinstance(o, torch.Tensor)]
        self._versions = list(map(_version, self._tensors))
        self._pointers = list(map(_data_ptr, self._tensors))
        usable = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in self._tensors)
        builder = getattr(net, "numpy_forward", None)
        self.forward: Optional[NumpyForward] = builder() if usable and callable(builder) else None
        #: in x out of the largest Linear layer (sets how many rows stay on the calling thread)
        self.widest_layer = max((m.in_features * m.out_features for m in net.modules() if isinstance(m, nn.Linear)), default=1)

    def current(self) -> bool:
        try:
            return (
                list(map(id, map(operator.getitem, self._dicts, self._names))) == self._ids
                and list(map(_version, self._tensors)) == self._versions
                and list(map(_data_ptr, self._tensors)) == self._pointers
            )
        except KeyError:  # a submodule, parameter or buffer was deleted
            return False
