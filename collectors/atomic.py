"""Atomic file writes for the whole project: a reader sees the old file or the new one, never half
of one, whatever kills the writer (the same rule the trajectory writer follows for directories).

>>> import json, tempfile, pathlib
>>> path = write_json_atomic(pathlib.Path(tempfile.mkdtemp()) / "report.json", {"auc": np.float32(0.5)})
>>> json.loads(path.read_text())
{'auc': 0.5}
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Callable, Union

import numpy as np

#: What :func:`write_atomic` writes: the bytes or text, or a function that writes the temp path.
Content = Union[bytes, str, Callable[[str], None]]


def write_atomic(path: str | os.PathLike[str], content: Content) -> pathlib.Path:
    """Write ``content`` to a temp file beside ``path``, then ``os.replace`` it into place; on any
    error the temp file is removed and ``path`` keeps its old content (or stays absent)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if callable(content):
            content(tmp)
        else:
            pathlib.Path(tmp).write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays as Python values, paths as strings;
    anything else is a ``TypeError`` naming its type (nothing is written as an unreadable repr)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__} ({obj!r:.80})")


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> pathlib.Path:
    """``payload`` as indented, key-sorted JSON, written atomically."""
    return write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=json_default) + "\n")


__all__ = ["Content", "json_default", "write_atomic", "write_json_atomic"]
