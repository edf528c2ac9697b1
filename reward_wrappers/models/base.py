"""The reward-model interface every wrapper consumes and every trainer produces.

A reward model has a :class:`ModelSpec` (which observation keys it reads, their shapes and
dtypes, how many frames of history it needs, what its raw output means) and a batched
``predict(batch) -> np.ndarray`` of shape ``(B,)``. A plain callable ``f(batch) -> (B,)`` is
accepted anywhere a model is; it is wrapped by :func:`as_reward_model` and is not validated. The
wrappers also accept a checkpoint path, which they load.

Batch layout: ``batch[key]`` has shape ``(B, *shape)`` when ``spec.window == 1`` (an image or
state model) and ``(B, window, *shape)`` otherwise (a video model), oldest frame first and the
current frame last. Which past frames fill the window is the spec's frame sampling
(:class:`~reward_wrappers.models.frames.FrameSampling`: the last ``window`` frames, strided, or uniform
over the episode so far); early in an episode the episode's first frame fills in. Trainers and
wrappers share that rule (:func:`window_indices`) so the online model sees exactly what it was
trained on.

>>> import numpy as np
>>> model = as_reward_model(lambda batch: batch["state"].sum(axis=1))
>>> model.predict({"state": np.ones((2, 3), np.float32)})
array([3., 3.])
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Protocol, Union, runtime_checkable

import numpy as np
from gymnasium import spaces

from envs.spaces import key_spaces
from reward_wrappers.models.frames import FrameSampling, FramesLike, as_frame_sampling

Batch = Mapping[str, np.ndarray]
RewardFn = Callable[[Batch], np.ndarray]

#: What a model's raw ``predict`` output means.
#: ``"logit"``: a success classifier's logit (probability = sigmoid);
#: ``"progress"``: task progress, roughly in [0, 1];
#: ``"reward"``: a per-step reward (e.g. a Bradley-Terry preference model).
OUTPUT_KINDS = ("logit", "progress", "reward")


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one observation key, for a single frame of a single env."""

    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputSpec":
        return cls(tuple(int(s) for s in d["shape"]), str(d["dtype"]))


@dataclass(frozen=True)
class ModelSpec:
    """What a reward model reads and what its output means."""

    inputs: dict[str, InputSpec]
    window: int = 1
    output: str = "logit"
    threshold: float = 0.5
    has_confidence: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    sampling: str = "last"
    stride: int = 1

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"ModelSpec.output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.window < 1:
            raise ValueError(f"ModelSpec.window must be >= 1, got {self.window}")
        self.frame_sampling  # validates sampling and stride

    @property
    def frame_sampling(self) -> FrameSampling:
        """Which frames fill the ``window`` (see :mod:`reward_wrappers.models.frames`)."""
        return FrameSampling(self.window, self.sampling, self.stride)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = {k: v.to_dict() for k, v in self.inputs.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        return cls(
            inputs={k: InputSpec.from_dict(v) for k, v in d["inputs"].items()},
            window=int(d.get("window", 1)),
            output=str(d.get("output", "logit")),
            threshold=float(d.get("threshold", 0.5)),
            has_confidence=bool(d.get("has_confidence", False)),
            extra=dict(d.get("extra", {})),
            sampling=str(d.get("sampling", "last")),
            stride=int(d.get("stride", 1)),
        )

    @classmethod
    def from_space(cls, observation_space: spaces.Space, keys: tuple[str, ...], **kwargs: Any) -> "ModelSpec":
        """Build a spec reading ``keys`` of a single-env observation space."""
        subspaces = key_spaces(observation_space)
        missing = [k for k in keys if k not in subspaces]
        if missing:
            raise KeyError(f"observation keys {missing} not in the space; available: {sorted(subspaces)}")
        return cls(
            inputs={k: InputSpec(tuple(subspaces[k].shape), np.dtype(subspaces[k].dtype).name) for k in keys},
            **kwargs,
        )


@runtime_checkable
class RewardModel(Protocol):
    """Anything with a ``spec`` and a batched ``predict``."""

    spec: ModelSpec | None

    def predict(self, batch: Batch) -> np.ndarray:  # pragma: no cover - protocol
        ...


class CallableRewardModel:
    """Adapts a plain ``f(batch) -> (B,)`` to :class:`RewardModel` (no spec, window 1)."""

    def __init__(self, fn: RewardFn, spec: ModelSpec | None = None) -> None:
        self.fn = fn
        self.spec = spec

    def predict(self, batch: Batch) -> np.ndarray:
        out = self.fn(batch)
        if out is None:
            raise TypeError(f"reward function {getattr(self.fn, '__name__', self.fn)!r} returned None; it must return "
                            "one number per frame of the batch, shape (B,)")
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def __repr__(self) -> str:
        return f"CallableRewardModel({getattr(self.fn, '__name__', self.fn)!r})"


#: What the wrappers accept: a model, a plain ``f(batch)`` or a checkpoint path (loaded by them).
ModelLike = Union[RewardModel, RewardFn, str, "os.PathLike[str]"]


def as_reward_model(model: ModelLike) -> RewardModel:
    """Return ``model`` if it already is a :class:`RewardModel`, else wrap the callable."""
    if hasattr(model, "predict") and hasattr(model, "spec"):
        return model  # type: ignore[return-value]
    if callable(model):
        return CallableRewardModel(model)  # type: ignore[arg-type]
    raise TypeError(f"expected a reward model (with .spec and .predict) or a callable, got {type(model).__name__}")


def import_function(target: str, what: str) -> Callable[..., Any]:
    """``"MODULE:FUNCTION"`` -> that function. Only for names a user typed (a CLI option or an
    argument), never for a name read from a file.

    >>> import_function("numpy:tanh", "--example") is np.tanh
    True
    """
    module, sep, name = target.partition(":")
    if not sep or not module or not name or ":" in name:
        raise ValueError(f"{what}: expected MODULE:FUNCTION, got {target!r}")
    import importlib

    function = getattr(importlib.import_module(module), name, None)
    if not callable(function):
        raise ValueError(f"{what}: module {module!r} has no function {name!r}")
    return function


def model_window(model: RewardModel) -> int:
    """Frames per prediction (one for a model without a spec)."""
    return 1 if getattr(model, "spec", None) is None else model.spec.window


def model_frames(model: RewardModel) -> FrameSampling:
    """The frame sampling a model reads with (one frame for a model without a spec)."""
    return FrameSampling() if getattr(model, "spec", None) is None else model.spec.frame_sampling


def window_indices(t: int, window: FramesLike) -> np.ndarray:
    """Frame indices forming the causal window that ends at frame ``t`` (first frame repeated);
    ``window`` is a frame count (the last frames) or a :class:`FrameSampling`.

    >>> window_indices(1, 4).tolist()
    [0, 0, 0, 1]
    >>> window_indices(6, FrameSampling(3, "strided", stride=3)).tolist()
    [0, 3, 6]
    """
    return as_frame_sampling(window).indices(t)


def check_space_matches(spec: ModelSpec | None, observation_space: spaces.Space, *, what: str = "env") -> None:
    """Raise ``ValueError`` if ``observation_space`` cannot feed a model with ``spec``.

    The message names each missing key, and each shape or dtype that differs, with the expected
    and the actual value.
    """
    if spec is None:
        return
    subspaces = key_spaces(observation_space)
    problems = []
    for key, inp in spec.inputs.items():
        if key not in subspaces:
            problems.append(f"missing observation key {key!r} (the {what} has {sorted(subspaces)})")
            continue
        sub = subspaces[key]
        if tuple(sub.shape) != tuple(inp.shape):
            problems.append(f"key {key!r}: model expects shape {tuple(inp.shape)}, {what} gives {tuple(sub.shape)}")
        if np.dtype(sub.dtype) != np.dtype(inp.dtype):
            problems.append(f"key {key!r}: model expects dtype {inp.dtype}, {what} gives {np.dtype(sub.dtype).name}")
    if problems:
        raise ValueError("reward model does not match the observations: " + "; ".join(problems))


def _dtype_name(arr: Any) -> str:
    """``"float32"`` for a numpy array or a torch tensor alike (torch is not imported here)."""
    dtype = arr.dtype
    if isinstance(dtype, np.dtype):
        return dtype.name
    return str(dtype).rpartition(".")[2]  # torch.float32 -> float32


def check_batch(spec: ModelSpec | None, batch: Batch, *, check_dtype: bool = False) -> None:
    """Raise ``ValueError`` if ``batch`` does not have the keys and shapes (and, with
    ``check_dtype``, the dtypes) of ``spec``; the message names expected and actual."""
    if spec is None:
        return
    for key, inp in spec.inputs.items():
        if key not in batch:
            raise ValueError(f"reward model input {key!r} missing from batch (got keys {sorted(batch)})")
        arr = np.asarray(batch[key]) if not hasattr(batch[key], "shape") else batch[key]
        frame_shape = tuple(arr.shape[2:]) if spec.window > 1 else tuple(arr.shape[1:])
        if frame_shape != tuple(inp.shape):
            raise ValueError(
                f"reward model input {key!r}: expected per-frame shape {tuple(inp.shape)}"
                f"{' with a window of ' + str(spec.window) if spec.window > 1 else ''}, got array of shape {tuple(arr.shape)}"
            )
        if check_dtype and _dtype_name(arr) != np.dtype(inp.dtype).name:
            raise ValueError(f"reward model input {key!r}: expected dtype {inp.dtype}, got {_dtype_name(arr)}")


class BatchCheck:
    """:func:`check_batch` for one spec, cheap enough to run on every step.

    The full check runs once per observation layout: a batch whose per-key per-frame shape and
    dtype were already accepted costs one shape comparison and one set lookup per key. Any other
    layout (a changed shape or dtype) goes through :func:`check_batch`, so it raises the same
    error naming expected and actual. Numpy arrays and torch tensors are both accepted.
    """

    def __init__(self, spec: ModelSpec | None, *, check_dtype: bool = True) -> None:
        self.spec = spec
        self.check_dtype = check_dtype
        offset = 1 if spec is None or spec.window == 1 else 2
        # key -> (offset of the per-frame shape, per-frame shape, dtypes already accepted)
        self._items: list[tuple[str, int, tuple[int, ...], set[Any]]] = (
            [] if spec is None else [(k, offset, tuple(v.shape), set()) for k, v in spec.inputs.items()]
        )

    def __call__(self, batch: Batch) -> None:
        try:
            for key, offset, shape, dtypes in self._items:
                arr = batch[key]
                if arr.shape[offset:] != shape or arr.dtype not in dtypes:
                    self._slow(batch)
                    return
        except (KeyError, AttributeError, TypeError):
            self._slow(batch)

    def _slow(self, batch: Batch) -> None:
        check_batch(self.spec, batch, check_dtype=self.check_dtype)  # raises on a mismatch
        for key, _, _, dtypes in self._items:
            arr = batch[key]
            if hasattr(arr, "dtype"):
                dtypes.add(arr.dtype)


def check_finite(values: np.ndarray, *, what: str = "reward model") -> np.ndarray:
    """Return ``values`` as float64 (B,), raising ``FloatingPointError`` on NaN or inf."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    if np.count_nonzero(finite) == values.size:  # the common case, without building the message
        return values
    bad = ~finite
    if bad.any():
        raise FloatingPointError(
            f"{what} returned non-finite values at batch indices {np.flatnonzero(bad)[:10].tolist()}: "
            f"{values[bad][:10].tolist()}; refusing to hand NaN/inf to the agent"
        )
    return values


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


class SwappableModel:
    """A reward model whose network can be replaced while wrappers use it (in-training refits).

    Every wrapper holding this object pays the new model's rewards from the very next step, with
    the new model's threshold; ``swap`` refuses a model that reads other keys, shapes or windows
    (the wrappers' frame windows and checks were built for the first one). Attributes other than
    ``spec`` and ``predict`` (confidence, ``predict_torch``) are the current model's.

    >>> import numpy as np
    >>> live = SwappableModel(lambda batch: batch["state"][:, 0])
    >>> live.swap(lambda batch: -batch["state"][:, 0])
    >>> live.predict({"state": np.ones((1, 2))}).tolist(), live.swaps
    ([-1.0], 1)
    """

    def __init__(self, model: ModelLike) -> None:
        self.current = as_reward_model(model)
        self.swaps = 0

    @property
    def spec(self) -> ModelSpec | None:
        return self.current.spec

    def predict(self, batch: Batch) -> np.ndarray:
        return self.current.predict(batch)

    def swap(self, model: ModelLike) -> None:
        new = as_reward_model(model)
        old_spec, new_spec = self.current.spec, new.spec
        if (old_spec is None) != (new_spec is None) or (
            old_spec is not None and (old_spec.inputs != new_spec.inputs or old_spec.frame_sampling != new_spec.frame_sampling
                                      or old_spec.output != new_spec.output)):
            raise ValueError(
                "a swapped-in reward model must read the same inputs with the same frames and output kind: "
                f"had {None if old_spec is None else (old_spec.inputs, old_spec.frame_sampling, old_spec.output)}, got "
                f"{None if new_spec is None else (new_spec.inputs, new_spec.frame_sampling, new_spec.output)}")
        self.current = new
        self.swaps += 1

    def __getattr__(self, name: str) -> Any:
        if name == "current":  # not yet set (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.current, name)

    def __repr__(self) -> str:
        return f"SwappableModel({self.current!r}, swaps={self.swaps})"
