"""The on-disk trajectory format: names, version, and the checks a reader applies.

A *buffer* is a root directory with two *splits*, ``positive/`` and ``negative/``. Each split
holds one directory per trajectory, named by a process-unique id, with one ``.npy`` per field
and a ``meta.json``::

    out_dir/
      positive/<id>/obs.rgb.npy       (T+1, H, W, 3) uint8, the reset frame first
                    actions.npy       (T, *action_shape)
                    rewards.npy       (T,) float64, the env's own reward
                    labels.npy        (T+1,) float32, labels[t] = success flag of observation t,
                                      NaN where nobody has said (meta.json "labelled": false)
                    terminated.npy    (T,) bool
                    truncated.npy     (T,) bool
                    info.<key>.npy    (T+1, ...) one per requested info key, reset info first
                    meta.json
      negative/<id>/...
      .tmp/       trajectories being written (ignored by readers)

Every file is a plain ``.npy`` (no pickles), so readers memory-map them with
``np.load(path, mmap_mode="r", allow_pickle=False)``. ``meta.json`` lists every field's shape
and dtype; a reader checks the files against it and against the length ``T``.

>>> per_frame("labels"), per_frame("actions")
(True, False)
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when a reader of the previous version could misread the new one.
FORMAT_VERSION = 1
FORMAT_NAME = "rewardswap-trajectory"

SPLITS: tuple[str, str] = ("positive", "negative")
META_FILE = "meta.json"
#: Writers build trajectories here and ``os.rename`` them into a split when complete.
TMP_DIR = ".tmp"

#: Fields with one entry per action (T); the others (``obs.*``, ``labels``, ``info.*``) have one per
#: observation (T+1).
PER_STEP_FIELDS: tuple[str, ...] = ("actions", "rewards", "terminated", "truncated")
REQUIRED_FIELDS: tuple[str, ...] = ("actions", "rewards", "labels", "terminated", "truncated")
META_REQUIRED: tuple[str, ...] = ("format", "format_version", "id", "split", "length", "success", "fields")
#: ``meta.json`` keys the recorder writes itself; user metadata may not override them.
RESERVED_META_KEYS: frozenset[str] = frozenset(META_REQUIRED) | {
    "env_id", "seed", "seed_chain", "labelled", "label", "success_key", "success_once", "reset_label_from_info", "info_missing_at_reset",
    "obs_keys", "info_keys", "episode_index", "created_unix", "host", "pid", "recorder"}
#: Field names are plain file stems inside the trajectory directory: no separators, no "..".
FIELD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: More elements than any array on a real machine: a header claiming more is corrupt.
MAX_ELEMENTS = 2**40


class TrajectoryFormatError(ValueError):
    """A trajectory directory is missing a file, has a length mismatch or a bad ``meta.json``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"bad trajectory {self.path}: {problem}")


def per_frame(field: str) -> bool:
    """True when ``field`` (a file stem such as ``"obs.rgb"``) has T+1 entries, not T."""
    return field not in PER_STEP_FIELDS


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone (no data read, no fd kept)."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # (3, 0): utf8 field names; numpy exposes no public reader for it
                shape, _fortran, dtype = np.lib.format._read_array_header(f, version)  # type: ignore[attr-defined]
        except Exception as exc:  # numpy's header parser raises several types (TokenError, SyntaxError...)
            raise ValueError(f"not a readable .npy header ({type(exc).__name__}: {exc})") from None
        data_offset = f.tell()
    if any(not isinstance(n, int) or n < 0 for n in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(f"the header's shape {shape} is impossible (negative or over {MAX_ELEMENTS} elements)")
    if not dtype.hasobject:
        needed = math.prod(shape) * dtype.itemsize  # Python ints: no int64 overflow
        on_disk = path.stat().st_size - data_offset
        if on_disk < needed:
            raise ValueError(f"truncated: {on_disk} bytes of data on disk, the header needs {needed}")
    return tuple(int(s) for s in shape), dtype


def read_meta(traj_dir: Path) -> dict[str, Any]:
    """Parse and check ``meta.json`` of one trajectory directory."""
    meta_path = traj_dir / META_FILE
    if not meta_path.is_file():
        raise TrajectoryFormatError(traj_dir, f"missing {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrajectoryFormatError(traj_dir, f"unreadable {META_FILE} ({exc})") from None
    if not isinstance(meta, dict):
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} is not a JSON object")
    missing = [k for k in META_REQUIRED if k not in meta]
    if missing:
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} lacks {missing}")
    if meta["format"] != FORMAT_NAME:
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} format is {meta['format']!r}, expected {FORMAT_NAME!r}")
    version = meta["format_version"]
    if type(version) is not int or version < 1:
        raise TrajectoryFormatError(traj_dir, f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise TrajectoryFormatError(
            traj_dir,
            f"format_version {meta['format_version']!r} is newer than this reader's {FORMAT_VERSION}; upgrade rewardswap",
        )
    if type(meta["length"]) is not int or meta["length"] < 0:
        raise TrajectoryFormatError(traj_dir, f"bad length {meta['length']!r} in {META_FILE}")
    if not isinstance(meta["fields"], dict):
        raise TrajectoryFormatError(traj_dir, f"'fields' in {META_FILE} is not an object")
    return meta


def check_trajectory_dir(traj_dir: Path, allow_symlinks: bool = False) -> dict[str, Any]:
    """Check one trajectory directory against its ``meta.json``; return the meta.

    Reads only ``.npy`` headers, so it is cheap and keeps no file open. Raises
    :class:`TrajectoryFormatError` naming the directory and the problem. Field names must be
    plain file stems; a symlinked trajectory directory or field file is refused unless
    ``allow_symlinks`` (a buffer must not read files outside itself because its files say so).
    """
    if not allow_symlinks and Path(traj_dir).is_symlink():
        raise TrajectoryFormatError(traj_dir, "is a symlink; pass allow_symlinks=True to follow it")
    meta = read_meta(traj_dir)
    if meta["split"] not in SPLITS or (Path(traj_dir).parent.name in SPLITS and meta["split"] != Path(traj_dir).parent.name):
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} says split {meta['split']!r} but the directory is in "
                                              f"{Path(traj_dir).parent.name!r}")
    length: int = meta["length"]
    fields: dict[str, Any] = meta["fields"]
    lacking = [f for f in REQUIRED_FIELDS if f not in fields]
    if lacking:
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} 'fields' lacks required fields {lacking}")
    if not any(f.startswith("obs.") for f in fields):
        raise TrajectoryFormatError(traj_dir, f"{META_FILE} 'fields' lists no obs.<key> field")
    for field, declared in fields.items():
        if not isinstance(field, str) or not FIELD_NAME.fullmatch(field) or ".." in field:
            raise TrajectoryFormatError(traj_dir, f"field name {field!r} in {META_FILE} is not a plain file stem")
        path = traj_dir / f"{field}.npy"
        if not allow_symlinks and path.is_symlink():
            raise TrajectoryFormatError(traj_dir, f"{path.name} is a symlink; pass allow_symlinks=True to follow it")
        if not path.is_file():
            raise TrajectoryFormatError(traj_dir, f"missing file {path.name}")
        try:
            shape, dtype = read_npy_header(path)
        except (OSError, ValueError) as exc:
            raise TrajectoryFormatError(traj_dir, f"unreadable {path.name} ({exc})") from None
        if dtype.hasobject:
            raise TrajectoryFormatError(traj_dir, f"{path.name} holds Python objects (a pickle); the format forbids them")
        want_len = length + 1 if per_frame(field) else length
        if not shape or shape[0] != want_len:
            raise TrajectoryFormatError(
                traj_dir,
                f"length mismatch: {path.name} has shape {shape}, expected {want_len} entries "
                f"({'T+1' if per_frame(field) else 'T'} with T={length} from {META_FILE})",
            )
        try:
            declared_shape = tuple(declared["shape"])
            declared_dtype = np.dtype(declared["dtype"])
        except (KeyError, TypeError) as exc:
            raise TrajectoryFormatError(traj_dir, f"bad entry for {field!r} in {META_FILE} ({exc})") from None
        if declared_shape != shape or declared_dtype != dtype:
            raise TrajectoryFormatError(
                traj_dir,
                f"{path.name} is {dtype}{list(shape)} but {META_FILE} says {declared_dtype}{list(declared_shape)}",
            )
    return meta
