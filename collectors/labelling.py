"""Marking a recorded trajectory's success after the fact: one decision, written atomically.

A person (or a function, or the env's recorded flag standing in for one) marks a trajectory's
*first success frame*, or marks it as never succeeding. That is **one label**, however many frames
it labels: frames from the mark on are successes, frames before it are not.
:func:`mark_trajectory` rewrites ``labels.npy`` and ``meta.json`` (``success``, ``split``,
``"labelled": true`` and a ``"label"`` record: source, first success frame, time) through
:func:`~collectors.atomic.write_atomic`, then moves the directory into its new split, all under the
buffer's lock (the one that caps are counted under). A crash between the ``meta.json`` rewrite and
the move leaves a directory whose ``meta.json`` names the other split; :func:`finish_moves` (run by
every ``rewardswap label``) completes such moves, so nothing written is lost.

:func:`claim` keeps two labelling pages off one trajectory: a second claim is refused at once.

>>> import tempfile, gymnasium as gym
>>> from collectors import TrajectoryRecorder, load_trajectories
>>> out = tempfile.mkdtemp()
>>> env = TrajectoryRecorder(gym.make("CartPole-v1", max_episode_steps=3), out, require_success_key=False)
>>> _ = env.reset(seed=1); _ = [env.step(1) for _ in range(3)]; env.close()
>>> traj = load_trajectories(out)[0]
>>> traj.labelled, traj.split
(False, 'negative')
>>> moved = mark_trajectory(traj.path, first_success=2, source="doctest")
>>> traj = load_trajectories(out)[0]
>>> traj.labelled, traj.split, traj.labels.tolist(), traj.meta["label"]["first_success"]
(True, 'positive', [0.0, 0.0, 1.0, 1.0], 2)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from collectors.atomic import write_atomic
from collectors.format import META_FILE, SPLITS, TrajectoryFormatError, read_meta
from collectors.root import LOCK_FILE, exclusive_lock

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: Hidden folder of a buffer root holding one lock file per trajectory being labelled.
CLAIMS_DIR = ".labelling"


class TrajectoryBusyError(RuntimeError):
    """Another labelling page (another process) holds this trajectory."""


def frame_labels(length: int, first_success: Optional[int]) -> np.ndarray:
    """Per-frame labels of a trajectory of ``length`` actions (``length + 1`` frames) from its mark.

    >>> frame_labels(3, 1).tolist(), frame_labels(2, None).tolist()
    ([0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    labels = np.zeros(length + 1, np.float32)
    if first_success is not None:
        if not 0 <= first_success <= length:
            raise ValueError(f"first success frame {first_success} is outside the trajectory's frames 0..{length}")
        labels[first_success:] = 1.0
    return labels


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def buffer_root(traj_dir: Path) -> Path:
    """The buffer root of a trajectory directory (``root/<split>/<id>``)."""
    if traj_dir.parent.name not in SPLITS:
        raise ValueError(f"{traj_dir} is not inside a buffer's positive/ or negative/ directory")
    return traj_dir.parent.parent


@contextlib.contextmanager
def claim(traj_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``traj_dir`` for labelling; :class:`TrajectoryBusyError` at once if another process does."""
    traj_dir = Path(traj_dir)
    claims = buffer_root(traj_dir) / CLAIMS_DIR
    claims.mkdir(exist_ok=True)
    fd = os.open(claims / f"{traj_dir.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrajectoryBusyError(f"trajectory {traj_dir.name} is being labelled by another page "
                                          "(another rewardswap label process); it is left to that one") from None
        yield
    finally:
        os.close(fd)


def mark_trajectory(traj_dir: str | os.PathLike[str], first_success: Optional[int], source: str,
                    *, labels: Optional[np.ndarray] = None, extra: Optional[dict[str, Any]] = None) -> Path:
    """Mark ``traj_dir``'s first success frame (None: never succeeds); return its new directory.

    ``source`` names the labeller (``env``, ``web``, ``module:callable``); ``labels`` replaces the
    rule "success from the mark on" where the source says more (the env's recorded per-frame
    flags); ``extra`` is added to the ``meta.json`` ``"label"`` record.
    """
    traj_dir = Path(traj_dir)
    root = buffer_root(traj_dir)
    with exclusive_lock(root / LOCK_FILE):
        meta = read_meta(traj_dir)
        if labels is None:
            labels = frame_labels(int(meta["length"]), first_success)
        labels = np.asarray(labels, np.float32)
        if labels.shape != (int(meta["length"]) + 1,):
            raise ValueError(f"{traj_dir}: {labels.shape[0]} labels for {int(meta['length']) + 1} frames")
        split = "positive" if first_success is not None else "negative"
        write_atomic(traj_dir / "labels.npy", _npy_bytes(labels))
        meta.update(success=first_success is not None, split=split, labelled=True,
                    label={"source": source, "first_success": first_success, "marked_unix": time.time(),
                           **(extra or {})})
        meta["fields"]["labels"] = {"shape": list(labels.shape), "dtype": str(labels.dtype)}
        write_atomic(traj_dir / META_FILE, json.dumps(meta, indent=1))
        return _move_into_split(traj_dir, split)


def _move_into_split(traj_dir: Path, split: str) -> Path:
    target = traj_dir.parent.parent / split / traj_dir.name
    if target != traj_dir:
        target.parent.mkdir(exist_ok=True)
        os.rename(traj_dir, target)
    return target


def finish_moves(root: str | os.PathLike[str]) -> int:
    """Move trajectories whose ``meta.json`` names the other split (a labelling interrupted
    between its two steps) into that split; return how many were moved."""
    root = Path(root)
    moved = 0
    with exclusive_lock(root / LOCK_FILE):
        for split in SPLITS:
            if not (root / split).is_dir():
                continue
            for traj_dir in sorted(p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    meta = read_meta(traj_dir)
                except TrajectoryFormatError:
                    continue  # not ours to mend: load_trajectories names what is wrong
                if meta.get("label") and meta["split"] in SPLITS and meta["split"] != split:
                    _move_into_split(traj_dir, meta["split"])
                    moved += 1
    return moved


__all__ = ["mark_trajectory", "finish_moves", "claim", "frame_labels", "TrajectoryBusyError", "CLAIMS_DIR"]
