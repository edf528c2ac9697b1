"""The array arithmetic the reward cores run on: numpy (per-env, SB3, gymnasium vector twins)
or torch (the torch-batched twin, tensors kept on their device), behind one small interface.

>>> import numpy as np
>>> NumpyOps().where(np.array([True, False]), 1.0, np.array([5.0, 6.0])).tolist()
[1.0, 6.0]
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from reward_wrappers.models.base import RewardModel, check_finite, sigmoid

Array = Union[np.ndarray, torch.Tensor]
#: Batched frames of a vector step: ``{key: (B, *shape)}`` (numpy arrays or tensors).
Frames = Mapping[str, Array]
Mask = Array


class NumpyOps:
    """Array operations for numpy batches (host memory, float64 rewards)."""

    name = "numpy"

    def floats(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(-1)

    def bools(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=bool).reshape(-1)

    def zeros(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float64)

    def falses(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=bool)

    def where(self, mask: Array, a: Any, b: Any) -> np.ndarray:
        return np.where(mask, a, b)

    def cat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=0)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64 and x.ndim == 1):
            return sigmoid(x)
        # base.sigmoid's exact arithmetic, in place: one temporary instead of three.
        out = np.multiply(x, 0.5)
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5
        return out

    def any(self, mask: Optional[Array]) -> bool:
        # count_nonzero is a plain C call; ndarray.any() goes through Python-level dispatch.
        return mask is not None and np.count_nonzero(mask) != 0

    def to_float(self, mask: np.ndarray) -> np.ndarray:
        return mask.astype(np.float64)

    def predict(self, model: RewardModel, batch: Frames) -> np.ndarray:
        return np.asarray(model.predict(batch), dtype=np.float64).reshape(-1)

    def confidence(self, model: Any, batch: Frames) -> np.ndarray:
        return np.asarray(model.predict_confidence(batch), dtype=np.float64).reshape(-1)

    def check_finite(self, values: np.ndarray, what: str) -> np.ndarray:
        if np.count_nonzero(np.isfinite(values)) == values.size:  # fast path; the full check builds the message
            return values
        return check_finite(values, what=what)


class TorchOps:
    """Array operations for torch batches that stay on ``device``.

    Models offering ``predict_torch(batch) -> tensor`` run on the tensors directly; others fall
    back to ``predict`` on a host copy (correct, but it is the per-step copy this path avoids).
    On a CUDA device the NaN/inf check is a device-side assert (no host synchronisation).
    """

    name = "torch"

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype

    def floats(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device).to(self.dtype).reshape(-1)

    def bools(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device).to(torch.bool).reshape(-1)

    def zeros(self, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=self.dtype, device=self.device)

    def falses(self, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.bool, device=self.device)

    def where(self, mask: Array, a: Any, b: Any) -> torch.Tensor:
        a = a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=self.dtype, device=self.device)
        b = b if isinstance(b, torch.Tensor) else torch.as_tensor(b, dtype=self.dtype, device=self.device)
        return torch.where(mask, a, b)

    def cat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=0)

    def sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def any(self, mask: Optional[Array]) -> bool:
        # One boolean read per step, the same synchronisation ManiSkillVectorEnv itself does
        # (``if dones.any()``) to decide whether to reset.
        return mask is not None and bool(mask.any())

    def to_float(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.to(self.dtype)

    def predict(self, model: RewardModel, batch: Frames) -> torch.Tensor:
        if hasattr(model, "predict_torch"):
            out = model.predict_torch(batch)  # type: ignore[attr-defined]
        else:
            host = {k: v.detach().cpu().numpy() for k, v in batch.items()}
            out = torch.as_tensor(np.asarray(model.predict(host)), device=self.device)
        return out.to(self.dtype).reshape(-1)

    def confidence(self, model: Any, batch: Frames) -> torch.Tensor:
        if hasattr(model, "predict_confidence_torch"):
            return model.predict_confidence_torch(batch).to(self.dtype).reshape(-1)
        host = {k: v.detach().cpu().numpy() for k, v in batch.items()}
        return torch.as_tensor(np.asarray(model.predict_confidence(host)), device=self.device).to(self.dtype).reshape(-1)

    def check_finite(self, values: torch.Tensor, what: str) -> torch.Tensor:
        message = f"{what} returned non-finite values; refusing to hand NaN/inf to the agent"
        if values.device.type == "cpu":
            bad = ~torch.isfinite(values)
            if bool(bad.any()):
                idx = torch.nonzero(bad).flatten()[:10].tolist()
                raise FloatingPointError(f"{message} (batch indices {idx}: {values[bad][:10].tolist()})")
        else:
            torch._assert_async(torch.isfinite(values).all(), message)
        return values


Ops = Union[NumpyOps, TorchOps]


__all__ = ["Array", "Frames", "Mask", "NumpyOps", "Ops", "TorchOps"]
