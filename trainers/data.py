"""From trajectory buffers to training batches: validation, splits by trajectory, sampling.

Frames of one episode are near-duplicates, so every split here is **by trajectory**, never by
frame. Observations are read from the memory-mapped ``.npy`` files batch by batch; a large
buffer is never loaded whole.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> random_shift(np.zeros((2, 8, 8, 3), np.uint8), pad=2, rng=rng).shape
(2, 8, 8, 3)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from reward_wrappers.models.base import InputSpec
from reward_wrappers.models.frames import FramesLike, as_frame_sampling

DataLike = str | os.PathLike | Sequence[Any]


def load_buffers(data: DataLike) -> list[Any]:
    """Trajectories from a buffer directory (see :mod:`collectors`) or an existing list of them."""
    if isinstance(data, (str, os.PathLike)):
        from collectors import load_trajectories

        trajectories = list(load_trajectories(data))
        where = f"{os.fspath(data)!r}"
    else:
        trajectories = list(data)
        where = "the given list"
    if not trajectories:
        raise ValueError(f"no trajectories found in {where}; record some with `rewardswap collect`")
    unlabelled = [t for t in trajectories if not getattr(t, "labelled", True)]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} of {len(trajectories)} trajectories in {where} are unlabelled (recorded without a success "
            f"flag, e.g. {unlabelled[0].path}): mark them first with `rewardswap label --data DIR --labeller web` "
            "(or --labeller module:callable)")
    return trajectories


def trajectory_marks(trajectories: Sequence[Any]) -> list[str]:
    """Ids of the recorded trajectories whose success marks a fit used: each is one label, however
    many frames it labels (``labelled`` frames of an in-training refit are counted by the refit)."""
    return sorted({str(t.id) for t in trajectories if hasattr(t, "meta")})


def recorded_env(trajectories: Sequence[Any]) -> dict[str, Any] | None:
    """The env spec (``envs.env_spec``) every trajectory's ``meta.json`` records, for the
    checkpoint; ``None`` when some record none or they disagree (data from several envs)."""
    specs = [getattr(t, "meta", {}).get("env") for t in trajectories]
    first = specs[0] if specs else None
    return first if first is not None and all(s == first for s in specs) else None


def recorded_embeddings(trajectories: Sequence[Any], inputs: Sequence[str]) -> dict[str, Any] | None:
    """``{key: {"identity", "source", "from", "batch_rows", "device"}}`` for the ``inputs`` that are
    backbone embeddings stored by ``rewardswap embed`` (``meta.json`` "embeddings"), for the checkpoint (the online
    wrapper refuses another backbone); ``None`` when no input is one.

    Raises ``ValueError`` naming both trajectories (and identities) when they disagree: the
    embeddings of one key from two backbones, or an embedding in one and a recorded field in another.

    >>> from types import SimpleNamespace
    >>> record = {"identity": "tiny:0123", "source": "torchscript:tiny.pt", "from": "rgb"}
    >>> trajs = [SimpleNamespace(path=p, meta={"embeddings": {"rgb_emb": record}}) for p in ("a", "b")]
    >>> recorded_embeddings(trajs, ["rgb_emb", "state"])["rgb_emb"]["identity"], recorded_embeddings(trajs, ["state"])
    ('tiny:0123', None)
    """
    found: dict[str, Any] = {}
    for key in inputs:
        records = [((getattr(t, "meta", None) or {}).get("embeddings") or {}).get(key) for t in trajectories]
        if all(r is None for r in records):
            continue
        identities = [None if r is None else r["identity"] for r in records]
        first = next(i for i, r in enumerate(records) if r is not None)
        for i, identity in enumerate(identities):
            if identity != identities[first]:
                other = identity if records[i] is not None else "no backbone (a recorded field)"
                raise ValueError(
                    f"input {key!r} differs between trajectories: {trajectories[first].path} holds embeddings from "
                    f"{identities[first]}, {trajectories[i].path} from {other}; embed every trajectory with one backbone")
        found[key] = dict(records[first])
    return found or None


def choose_inputs(trajectories: Sequence[Any], inputs: Sequence[str] | None) -> tuple[str, ...]:
    """``inputs`` as given, or when None the data's image keys (uint8, 3-D frames), else its
    ``state`` key, else every vector key; what was chosen is printed (stderr).

    >>> from types import SimpleNamespace
    >>> traj = SimpleNamespace(obs={"state": np.zeros((3, 4), np.float32), "rgb": np.zeros((3, 8, 8, 3), np.uint8)})
    >>> choose_inputs([traj], None), choose_inputs([traj], ["state"])
    (('rgb',), ('state',))
    """
    if inputs is not None:
        return tuple(inputs)
    obs = trajectories[0].obs
    images = [k for k in obs if obs[k].dtype == np.uint8 and obs[k].ndim == 4]
    vectors = [k for k in obs if obs[k].ndim == 2]
    chosen = tuple(images or (["state"] if "state" in obs else vectors))
    if not chosen:
        raise ValueError(f"cannot choose inputs from observation keys {sorted(obs)}: pass inputs (--inputs KEY...)")
    what = "its image keys" if images else "its state key" if "state" in obs else "its vector keys"
    print(f"inputs not given: the model reads {list(chosen)} ({what}; keys in the data: {sorted(obs)})", file=sys.stderr)
    return chosen


def input_specs(trajectories: Sequence[Any], keys: Sequence[str]) -> dict[str, InputSpec]:
    """Per-frame shape and dtype of each key, checked identical across all trajectories."""
    if not keys:
        raise ValueError("inputs must name at least one observation key")
    specs: dict[str, InputSpec] = {}
    first_path: dict[str, Any] = {}
    for traj in trajectories:
        for key in keys:
            if key not in traj.obs:
                raise KeyError(
                    f"trajectory {traj.path} has no observation key {key!r}; it has {sorted(traj.obs)}"
                )
            arr = traj.obs[key]
            spec = InputSpec(tuple(arr.shape[1:]), np.dtype(arr.dtype).name)
            if key not in specs:
                specs[key], first_path[key] = spec, traj.path
            elif spec != specs[key]:
                raise ValueError(
                    f"observation {key!r} differs between trajectories: {first_path[key]} has shape "
                    f"{specs[key].shape} dtype {specs[key].dtype}, {traj.path} has shape {spec.shape} dtype {spec.dtype}"
                )
    return specs


def split_by_trajectory(
    trajectories: Sequence[Any],
    val_fraction: float,
    seed: int,
    stratify: Callable[[Any], bool] = lambda t: bool(t.success),
) -> tuple[list[Any], list[Any]]:
    """Shuffle and split trajectories into train and val, stratified by ``stratify``.

    A stratum of ``n >= 2`` trajectories sends ``round(val_fraction * n)`` of them to val, clamped
    to ``1 .. n - 1`` so both splits see both kinds; a stratum of one goes to train. Raises
    ``ValueError`` when a split ends up empty.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train: list[Any] = []
    val: list[Any] = []
    for stratum in (True, False):
        members = [t for t in trajectories if stratify(t) == stratum]
        order = rng.permutation(len(members))
        n_val = min(max(int(round(val_fraction * len(members))), 1), len(members) - 1) if len(members) >= 2 else 0
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    if not train or not val:
        raise ValueError(
            f"split by trajectory left the {'train' if not train else 'val'} split empty "
            f"({len(trajectories)} trajectories, val_fraction={val_fraction}); record more trajectories"
        )
    return train, val


@dataclass
class FrameTable:
    """One row per frame: which trajectory, which frame, and its success label."""

    traj: np.ndarray
    frame: np.ndarray
    label: np.ndarray

    @classmethod
    def from_trajectories(cls, trajectories: Sequence[Any]) -> "FrameTable":
        lengths = [len(t.labels) for t in trajectories]
        return cls(
            traj=np.repeat(np.arange(len(trajectories)), lengths),
            frame=np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0, int),
            label=np.concatenate([np.asarray(t.labels, dtype=np.float32) for t in trajectories]).astype(np.float32),
        )

    def __len__(self) -> int:
        return len(self.traj)

    @property
    def positives(self) -> np.ndarray:
        return np.flatnonzero(self.label > 0.5)

    @property
    def negatives(self) -> np.ndarray:
        return np.flatnonzero(self.label <= 0.5)


def gather(
    trajectories: Sequence[Any],
    traj_ids: np.ndarray,
    frame_ids: np.ndarray,
    keys: Sequence[str],
    window: FramesLike = 1,
) -> dict[str, np.ndarray]:
    """Read a batch of frames (or the causal windows ``window`` picks at them) for ``keys``."""
    sampling = as_frame_sampling(window)
    batch: dict[str, np.ndarray] = {}
    for key in keys:
        rows = []
        for ti, fi in zip(traj_ids, frame_ids):
            source = trajectories[int(ti)].obs[key]
            rows.append(source[int(fi)] if sampling.frames == 1 else source[sampling.indices(int(fi))])
        batch[key] = np.stack(rows)
    return batch


def balanced_indices(
    table: FrameTable,
    batch_size: int,
    rng: np.random.Generator,
    focus: np.ndarray | None = None,
    focus_share: float = 0.0,
) -> np.ndarray:
    """Row indices of one batch: half positive frames, half negative, drawn with replacement.

    ``focus`` (a boolean mask over the rows) marks frames that take ``focus_share`` of each
    class's half wherever that class has some: frames labelled during training, few beside the
    original data, would otherwise be drawn at their share of it and barely move the model.

    >>> table = FrameTable(np.zeros(6, int), np.arange(6), np.array([1, 1, 0, 0, 0, 0], np.float32))
    >>> rows = balanced_indices(table, 1000, np.random.default_rng(0), focus=np.arange(6) == 5, focus_share=0.5)
    >>> round(float(np.mean(rows == 5)), 1), round(float(np.mean(rows < 2)), 1)
    (0.3, 0.5)
    """
    halves = []
    for rows, n in ((table.positives, batch_size // 2), (table.negatives, batch_size - batch_size // 2)):
        if len(rows) == 0:
            raise ValueError(
                f"balanced batches need both classes; the training split has {len(table.positives)} positive and "
                f"{len(table.negatives)} negative frames"
            )
        focused = rows[focus[rows]] if focus is not None else rows[:0]
        n_focus = int(round(focus_share * n)) if len(focused) else 0
        halves += [rng.choice(focused, n_focus), rng.choice(rows, n - n_focus)]
    return np.concatenate(halves)


def iterate_rows(n: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Random-shift augmentation (pad with edge pixels, random crop back), one shift per sample.

    ``images`` is ``(B, ..., H, W, C)``; all frames of one sample (a window) shift together.
    """
    if pad <= 0:
        return images
    h, w = images.shape[-3], images.shape[-2]
    widths = [(0, 0)] * (images.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)]
    padded = np.pad(images, widths, mode="edge")
    out = np.empty_like(images)
    shifts = rng.integers(0, 2 * pad + 1, size=(len(images), 2))
    for i, (dy, dx) in enumerate(shifts):
        out[i] = padded[i, ..., dy : dy + h, dx : dx + w, :]
    return out


def shift_pad(height: int, width: int) -> int:
    """Pixels of random shift for an image size: DrQ's 4 at 64x64, scaled with the shorter side
    (2 at 24x40, 8 at 128x128), so a small camera's few-pixel object is not shifted off the image.

    >>> shift_pad(64, 64), shift_pad(24, 40), shift_pad(128, 128)
    (4, 2, 8)
    """
    return max(1, round(min(height, width) / 16))


def augment_images(batch: dict[str, np.ndarray], keys: Sequence[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random-shift the image ``keys`` of a batch in place (see :func:`shift_pad`); returns ``batch``."""
    for key in keys:
        images = batch[key]
        batch[key] = random_shift(images, shift_pad(images.shape[-3], images.shape[-2]), rng)
    return batch


def state_statistics(trajectories: Sequence[Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of a state key over all frames, streamed one trajectory at a time."""
    total, total_sq, count = 0.0, 0.0, 0
    for traj in trajectories:
        x = np.asarray(traj.obs[key], dtype=np.float64)
        total = total + x.sum(axis=0)
        total_sq = total_sq + (x**2).sum(axis=0)
        count += len(x)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def gather_windows(
    trajectories: Sequence[Any],
    traj_ids: np.ndarray,
    frame_windows: np.ndarray,
    keys: Sequence[str],
) -> dict[str, np.ndarray]:
    """Read frames at arbitrary per-sample indices: ``frame_windows`` is ``(B,)`` or ``(B, W)``.

    Unlike :func:`gather`, the window need not be contiguous (a rewound clip runs backwards), so
    the caller builds it. Rows of one trajectory are read with one fancy index on its memmap.

    >>> import numpy as np
    >>> class T:  # any object with .obs works
    ...     obs = {"state": np.arange(5, dtype=np.float32)[:, None]}
    >>> gather_windows([T()], np.array([0, 0]), np.array([[0, 1], [3, 2]]), ["state"])["state"][..., 0].tolist()
    [[0.0, 1.0], [3.0, 2.0]]
    """
    traj_ids = np.asarray(traj_ids, dtype=np.int64)
    frame_windows = np.asarray(frame_windows, dtype=np.int64)
    batch: dict[str, np.ndarray] = {}
    for key in keys:
        first = trajectories[int(traj_ids[0])].obs[key]
        out = np.empty((*frame_windows.shape, *first.shape[1:]), dtype=first.dtype)
        for ti in np.unique(traj_ids):
            rows = np.flatnonzero(traj_ids == ti)
            flat = frame_windows[rows].reshape(-1)
            out[rows] = np.asarray(trajectories[int(ti)].obs[key][flat]).reshape(len(rows), *frame_windows.shape[1:], *first.shape[1:])
        batch[key] = out
    return batch
