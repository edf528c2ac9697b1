"""Import trajectories saved by RLinf's ``RewardDataCollector`` into our format.

RLinf saves each trajectory as ``{counter:06d}.npy`` holding a *pickled dict* (``np.save`` of
a Python dict)::

    {"images": {"base_camera": float32 [T, C, H, W] in [0, 1]},
     "labels": float32 [T]}            # per-frame success_frame labels

into a ``positive_dir`` and a ``negative_dir``. We convert images to uint8 ``(H, W, C)`` (as our
recorder stores them), keep each image key as an observation key (``rename`` maps them, e.g.
``{"base_camera": "rgb"}`` to feed a model that reads ``"rgb"``), and keep the labels. RLinf
stores neither actions nor rewards: imported trajectories have ``actions`` of shape ``(T-1, 0)``,
``rewards`` all NaN, ``terminated``/``truncated`` all False, and ``meta["source"] = "rlinf"``.

Unpickling runs code from the file, so :func:`import_rlinf` refuses unless
``allow_pickle=True``: only pass that for files you (or someone you trust) produced.

>>> import tempfile, numpy as np
>>> src = tempfile.mkdtemp()
>>> np.save(f"{src}/000000.npy", {"images": {"base_camera": np.ones((2, 3, 4, 4), np.float32)},
...                                "labels": np.array([0, 1], np.float32)}, allow_pickle=True)
>>> dst = tempfile.mkdtemp()
>>> paths = import_rlinf(src, dst, allow_pickle=True, rename={"base_camera": "rgb"})
>>> from collectors import load_trajectories
>>> t = load_trajectories(dst)[0]
>>> t.obs["rgb"].shape, t.obs["rgb"].dtype, t.success, len(t)
((2, 4, 4, 3), dtype('uint8'), True, 1)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from collectors.format import SPLITS, read_npy_header
from collectors.root import prepare_root
from collectors.writer import write_trajectory


class PickleRefusedError(ValueError):
    """The source holds pickled objects and ``allow_pickle`` was not given."""


def _source_files(src: Path) -> list[tuple[Path, str | None]]:
    """``(file, split-from-directory-name or None)`` for every ``.npy`` under ``src``."""
    if src.is_file():
        parent = src.parent.name
        return [(src, parent if parent in SPLITS else None)]
    if not src.is_dir():
        raise FileNotFoundError(f"no such RLinf file or directory: {src}")
    if any((src / s).is_dir() for s in SPLITS):
        return [(f, s) for s in SPLITS if (src / s).is_dir() for f in sorted((src / s).glob("*.npy"))]
    split = src.name if src.name in SPLITS else None
    return [(f, split) for f in sorted(src.glob("*.npy"))]


def _to_uint8_hwc(images: Any, path: Path, key: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3, 4):
        raise ValueError(f"{path}: images[{key!r}] has shape {arr.shape}; expected RLinf's [T, C, H, W] with C in 1/3/4")
    if arr.dtype == np.uint8:
        hwc = arr
    else:
        arr = arr.astype(np.float32, copy=False)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(
                f"{path}: images[{key!r}] range [{lo:.3g}, {hi:.3g}] is not RLinf's [0, 1]; refusing to guess a scale"
            )
        hwc = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(hwc.transpose(0, 2, 3, 1))


def import_rlinf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    rename: Mapping[str, str] | None = None,
) -> list[Path]:
    """Convert RLinf trajectory ``.npy`` files under ``src`` into a buffer at ``dst``.

    ``src`` is one file, a directory of files (RLinf's ``positive_dir`` or ``negative_dir``) or a
    directory with ``positive/`` and ``negative/`` in it. The split is taken from the source
    directory name when it is ``positive``/``negative`` (RLinf also files ``success_once``
    episodes as positive, which the labels alone cannot show), else from the labels (any >= 0.5).
    Trajectory ids are ``rlinf-<split>-<file stem>``, so importing twice skips what exists.

    Returns the trajectory directories written (not those skipped as already imported).

    Raises:
        PickleRefusedError: without ``allow_pickle=True`` (the files are pickles; loading one
            can run arbitrary code).
        ValueError: a file is not an RLinf trajectory (the message says what is wrong).
    """
    src, dst = Path(src), Path(dst)
    files = _source_files(src)
    rename = dict(rename or {})
    for path, _split in files:
        _shape, dtype = read_npy_header(path)
        if not dtype.hasobject:
            raise ValueError(f"{path}: a plain {dtype} array, not an RLinf trajectory (a pickled dict)")
        if not allow_pickle:
            raise PickleRefusedError(
                f"{path} is a pickled Python dict (RLinf saves trajectories with np.save of a dict). "
                f"Unpickling can execute arbitrary code, so import_rlinf refuses by default. If you trust "
                f"these files, call import_rlinf(src, dst, allow_pickle=True) "
                f"(CLI: rewardswap collect --import-rlinf SRC --out DST --allow-pickle)."
            )
    prepare_root(dst)
    written: list[Path] = []
    for path, dir_split in files:
        try:
            record = np.load(path, allow_pickle=True).item()
        except Exception as exc:
            raise ValueError(f"{path}: could not load an RLinf trajectory ({type(exc).__name__}: {exc})") from None
        if not isinstance(record, dict) or "images" not in record or "labels" not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{path}: expected a dict with 'images' and 'labels', got {keys}")
        images = record["images"]
        if not isinstance(images, dict) or not images:
            raise ValueError(f"{path}: 'images' must be a non-empty dict of camera -> [T, C, H, W] arrays")
        labels = np.asarray(record["labels"], dtype=np.float32).reshape(-1)
        obs = {rename.get(k, k): _to_uint8_hwc(v, path, k) for k, v in images.items()}
        n_frames = len(labels)
        for key, arr in obs.items():
            if len(arr) != n_frames:
                raise ValueError(f"{path}: {len(arr)} frames of {key!r} but {n_frames} labels")
        if n_frames == 0:
            raise ValueError(f"{path}: an empty trajectory (0 frames)")
        success = bool((labels >= 0.5).any())
        split = dir_split if dir_split is not None else ("positive" if success else "negative")
        traj_id = f"rlinf-{split}-{path.stem}"
        if (dst / split / traj_id).exists():
            continue
        steps = n_frames - 1
        fields: dict[str, np.ndarray] = {f"obs.{k}": v for k, v in obs.items()}
        fields["actions"] = np.zeros((steps, 0), np.float32)
        fields["rewards"] = np.full(steps, np.nan)
        fields["labels"] = labels
        fields["terminated"] = np.zeros(steps, bool)
        fields["truncated"] = np.zeros(steps, bool)
        meta = {
            "env_id": None,
            "seed": None,
            "success": split == "positive",
            "success_key": "success_frame",
            "obs_keys": list(obs),
            "info_keys": [],
            "source": "rlinf",
            "source_file": str(path.resolve()),
            "has_actions": False,
            "has_rewards": False,
        }
        written_path = write_trajectory(dst, split, traj_id, fields, meta)
        assert written_path is not None
        written.append(written_path)
    return written
