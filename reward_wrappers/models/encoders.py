"""Per-frame encoders of reward networks, and float32 numpy copies of small state networks.

Image keys (``uint8`` ``(H, W, C)``, any size) get ``"cnn"`` (:class:`SmallCNN`, small and fast,
the default) or ``"resnet10"`` (:class:`ResNet10`, GroupNorm ResNet-10 with spatial learned-
embedding pooling, as in HIL-SERL / RLinf); state keys (1-D) get a :class:`StateMLP` that
normalises with a stored mean/std. :func:`build_frame_encoders` makes one per key of a spec.

>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> spec = ModelSpec({"rgb": InputSpec((24, 40, 3), "uint8"), "state": InputSpec((5,), "float32")})
>>> {k: type(v).__name__ for k, v in build_frame_encoders(spec, feature_dim=16).items()}
{'rgb': 'SmallCNN', 'state': 'StateMLP'}
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from reward_wrappers.models.base import ModelSpec, sigmoid

#: ``(W^T, b)`` for a Linear layer, ``None`` for a ReLU.
NumpyLayer = Optional[tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------
# numpy copies of small state networks
# --------------------------------------------------------------------------------------------
# A torch call costs ~5-10 us of dispatch per layer on a CPU, several times the arithmetic of a
# state MLP at the batch sizes of a vector env (8 rows). The wrappers' per-step model call goes
# through these float32 numpy copies instead; they exist only for networks made of Linear and
# ReLU layers plus the stored input normalisation, and TorchRewardModel keeps them in sync.
def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def numpy_layers(module: nn.Module) -> Optional[list[NumpyLayer]]:
    """``module`` (a Linear, a ReLU or a Sequential of them) as numpy layers; ``None`` otherwise."""
    children = list(module) if isinstance(module, nn.Sequential) else [module]
    layers: list[NumpyLayer] = []
    for child in children:
        if type(child) is nn.Linear:
            bias = child.bias if child.bias is not None else torch.zeros(child.out_features)
            layers.append((np.ascontiguousarray(_array(child.weight).T), _array(bias)))
        elif type(child) is nn.ReLU:
            layers.append(None)
        elif type(child) is not nn.Identity:
            return None
    return layers


def run_numpy_layers(layers: list[NumpyLayer], h: np.ndarray) -> np.ndarray:
    """Apply ``layers`` to ``h`` (never modified: the first layer always writes a new array)."""
    owned = False
    for layer in layers:
        if layer is None:
            h = np.maximum(h, 0.0, out=h if owned else None)
        else:
            h = h @ layer[0]
            h += layer[1]
        owned = True
    return h


def numpy_sigmoid(x: np.ndarray) -> np.ndarray:
    """:func:`reward_wrappers.models.base.sigmoid` (overflow-free) as float32, like the torch forward."""
    return sigmoid(x).astype(np.float32)

class SmallCNN(nn.Module):
    """Four strided 3x3 convolutions and global average pooling; fast on a CPU at 64x64."""

    def __init__(self, in_channels: int, width: int = 32, out_dim: int = 128) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width * 2, width * 4, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.proj = nn.Linear(width * 4 * 2, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        # Mean and max pooling: max keeps small objects (a goal disk) visible after pooling.
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return F.relu(self.proj(pooled))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(min(32, cout // 4), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(min(32, cout // 4), cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(min(32, cout // 4), cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.skip(x))


class SpatialLearnedEmbeddings(nn.Module):
    """Pool a feature map with learned per-location kernels (keeps *where*, unlike mean pooling)."""

    def __init__(self, channels: int, height: int, width: int, num_features: int = 8) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, height, width, num_features) * 0.02)
        self.out_dim = channels * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,chwf->bcf", x, self.kernel).flatten(1)


class ResNet10(nn.Module):
    """GroupNorm ResNet-10 (one basic block per stage, widths 64-128-256-512)."""

    def __init__(self, in_channels: int, image_hw: tuple[int, int], out_dim: int = 256, num_features: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.GroupNorm(16, 64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        self.stages = nn.Sequential(
            _BasicBlock(64, 64, 1), _BasicBlock(64, 128, 2), _BasicBlock(128, 256, 2), _BasicBlock(256, 512, 2)
        )
        with torch.no_grad():
            h, w = self.stages(self.stem(torch.zeros(1, in_channels, *image_hw))).shape[2:]
        self.pool = SpatialLearnedEmbeddings(512, h, w, num_features)
        self.proj = nn.Sequential(nn.Dropout(0.1), nn.Linear(self.pool.out_dim, out_dim), nn.LayerNorm(out_dim), nn.Tanh())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.stages(self.stem(x))))


class StateMLP(nn.Module):
    """Normalise a state vector with stored mean/std, then a two-layer MLP."""

    def __init__(self, dim: int, hidden: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)

    def numpy_forward(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        """A float32 numpy copy of :meth:`forward` (``None`` if ``net`` is not Linear/ReLU only)."""
        layers = numpy_layers(self.net)
        if layers is None or layers[0] is None:
            return None
        mean, std = _array(self.mean), _array(self.std)
        # 1/std folded into the first layer's weights (one array op fewer per call). The mean is
        # not folded: x - mean stays exact where a feature is near-constant (std clamped at 1e-6).
        weight, bias = layers[0]
        layers[0] = (np.ascontiguousarray(weight / std[:, None]), bias)

        def forward(x: np.ndarray) -> np.ndarray:
            return run_numpy_layers(layers, np.asarray(x, dtype=np.float32) - mean)

        return forward


def is_image_input(shape: tuple[int, ...], dtype: str) -> bool:
    """A ``uint8`` ``(H, W, C)`` input, encoded by a CNN (anything 1-D is a state vector)."""
    return len(shape) == 3 and dtype == "uint8"


def build_frame_encoders(spec: ModelSpec, *, encoder: str = "cnn", hidden: int = 256, feature_dim: int = 128,
                         cnn_width: int = 32) -> nn.ModuleDict:
    """One encoder per input key of ``spec``, each mapping one frame to ``feature_dim`` features."""
    encoders: dict[str, nn.Module] = {}
    for key, inp in spec.inputs.items():
        if is_image_input(inp.shape, inp.dtype):
            h, w, c = inp.shape
            if encoder == "cnn":
                encoders[key] = SmallCNN(c, cnn_width, feature_dim)
            elif encoder == "resnet10":
                encoders[key] = ResNet10(c, (h, w), out_dim=feature_dim)
            else:
                raise ValueError(f"unknown image encoder {encoder!r}; choose 'cnn' or 'resnet10'")
        elif len(inp.shape) == 1:
            encoders[key] = StateMLP(inp.shape[0], hidden, feature_dim)
        else:
            raise ValueError(
                f"input {key!r} has shape {inp.shape} and dtype {inp.dtype}: expected a uint8 (H, W, C) "
                "image or a 1-D state vector"
            )
    return nn.ModuleDict(encoders)
