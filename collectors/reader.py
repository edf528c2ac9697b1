"""Read recorded trajectories back, lazily and without unpickling anything.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> load_trajectories(root)  # an empty buffer (no splits yet) is just empty
[]
"""

from __future__ import annotations

import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from collectors.format import SPLITS, TMP_DIR, TrajectoryFormatError, check_trajectory_dir, read_meta


class _LazyFields(Mapping[str, np.ndarray]):
    """``{key: array}`` whose arrays are memory-mapped on first access, then cached."""

    def __init__(self, directory: Path, prefix: str, keys: list[str]) -> None:
        self._directory = directory
        self._prefix = prefix
        self._keys = keys
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            if key not in self._keys:
                raise KeyError(f"{key!r} (stored keys: {self._keys})")
            self._cache[key] = _load(self._directory / f"{self._prefix}{key}.npy")
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<lazy {self._prefix.rstrip('.')} fields {self._keys}>"


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # changed on disk since the header check; numpy raises several types
        raise TrajectoryFormatError(path.parent, f"unreadable {path.name} ({type(exc).__name__}: {exc})") from None


class Trajectory:
    """One recorded episode. Arrays are read-only memory maps, opened on first access.

    Attributes:
        obs: ``{key: (T+1, ...) array}``, the reset frame first.
        actions: ``(T, ...)``; ``rewards``: ``(T,)`` env reward; ``labels``: ``(T+1,)`` float32,
            ``labels[t]`` is the success flag of ``obs[key][t]``.
        terminated, truncated: ``(T,)`` bool.
        info: ``{key: (T+1, ...) array}`` for the info keys recorded.
        meta: the parsed ``meta.json``; ``success``, ``id``, ``split``, ``path`` come from it.

    ``len(traj)`` is T, the number of actions.

    >>> # traj.obs["rgb"][0] is the reset image, traj.labels[-1] the label of the last frame
    """

    def __init__(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = dict(meta) if meta is not None else check_trajectory_dir(self.path)
        fields = list(self.meta["fields"])
        self.obs: Mapping[str, np.ndarray] = _LazyFields(self.path, "obs.", [f[4:] for f in fields if f.startswith("obs.")])
        self.info: Mapping[str, np.ndarray] = _LazyFields(self.path, "info.", [f[5:] for f in fields if f.startswith("info.")])

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def split(self) -> str:
        return str(self.meta["split"])

    @property
    def success(self) -> bool:
        return bool(self.meta["success"])

    @property
    def labelled(self) -> bool:
        """False until every frame has a success label (``meta.json`` ``"labelled"``; recordings
        older than that key were always labelled by the env's flag)."""
        return bool(self.meta.get("labelled", True))

    @cached_property
    def actions(self) -> np.ndarray:
        return _load(self.path / "actions.npy")

    @cached_property
    def rewards(self) -> np.ndarray:
        return _load(self.path / "rewards.npy")

    @cached_property
    def labels(self) -> np.ndarray:
        return _load(self.path / "labels.npy")

    @cached_property
    def terminated(self) -> np.ndarray:
        return _load(self.path / "terminated.npy")

    @cached_property
    def truncated(self) -> np.ndarray:
        return _load(self.path / "truncated.npy")

    def __len__(self) -> int:
        return int(self.meta["length"])

    def __repr__(self) -> str:
        return (f"Trajectory({self.split}/{self.id}, T={len(self)}, success={self.success}, "
                f"obs={list(self.obs)}, info={list(self.info)})")


def _trajectory_dirs(split_dir: Path) -> list[Path]:
    # Hidden names are temp or lock files of writers; they are never trajectories.
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _resolve(path: Path, split: str | None) -> list[Path]:
    """Trajectory directories under ``path`` (a root, a split dir or one trajectory dir)."""
    if not path.exists():
        raise FileNotFoundError(f"no such trajectory buffer: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; pass a buffer root, a split dir or a trajectory dir")
    if (path / "meta.json").exists() or any(p.suffix == ".npy" for p in path.iterdir()):
        return [path]  # one trajectory dir (even a broken one: the check reports what is wrong)
    if path.name in SPLITS and not any((path / s).is_dir() for s in SPLITS):
        if split is not None and split != path.name:
            raise ValueError(f"split={split!r} contradicts the split directory {path}")
        return _trajectory_dirs(path)
    splits = SPLITS if split is None else (split,)
    present = [s for s in SPLITS if (path / s).is_dir()]
    others = [p.name for p in path.iterdir() if not p.name.startswith(".") and p.name not in SPLITS]
    if not present and others:
        raise ValueError(
            f"{path} is not a trajectory buffer: expected positive/ and negative/ split directories, "
            f"a split directory, or a trajectory directory with meta.json; found {sorted(others)[:5]}"
        )
    dirs: list[Path] = []
    for s in splits:
        if (path / s).is_dir():
            dirs.extend(_trajectory_dirs(path / s))
    return dirs


def load_trajectories(
    path: str | os.PathLike[str], split: str | None = None, skip_bad: bool = False, allow_symlinks: bool = False
) -> list[Trajectory]:
    """Load the trajectories under ``path``: a buffer root, a split directory or one trajectory.

    Arrays are memory-mapped lazily (``np.load(..., mmap_mode="r", allow_pickle=False)``);
    loading checks every file's header against ``meta.json`` and the length T without reading
    data. Temp directories of writers that are still running or crashed are ignored.

    Args:
        path: the buffer root (both splits), ``root/positive``, ``root/negative`` or a
            trajectory directory.
        split: ``None`` (both), ``"positive"`` or ``"negative"``.
        skip_bad: skip corrupt or partial trajectories with a warning instead of raising.
        allow_symlinks: follow symlinked trajectory directories and field files (refused by
            default: a buffer reads only files inside itself).

    Raises:
        TrajectoryFormatError: a trajectory is missing a file, has a length mismatch or a bad
            ``meta.json`` (the message names the directory and the problem).

    >>> import tempfile
    >>> load_trajectories(tempfile.mkdtemp(), split="positive")
    []
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be None, 'positive' or 'negative', got {split!r}")
    path = Path(path)
    if path.name == TMP_DIR or path.parent.name == TMP_DIR:
        raise ValueError(f"{path} is a writer's temp directory, not a finished trajectory")
    trajectories: list[Trajectory] = []
    for traj_dir in _resolve(path, split):
        try:
            meta = check_trajectory_dir(traj_dir, allow_symlinks=allow_symlinks)
        except TrajectoryFormatError as exc:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        if split is not None and meta["split"] != split:
            continue
        trajectories.append(Trajectory(traj_dir, meta))
    return trajectories


__all__ = ["Trajectory", "load_trajectories", "TrajectoryFormatError", "read_meta"]
