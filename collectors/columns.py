"""An episode's per-step scalars (:class:`EpisodeSteps`) and the columns built from them (:class:`Column`).

The recorder only collects each step's reward, flags and label as the env returned them; turning
them into the stored columns, and the episode's return, is left to whichever writer runs, off
the env's thread where it can (see :class:`EpisodeSteps`).

>>> steps = EpisodeSteps(1.0, [(0.5, True, False, 0.0)])
>>> {name: col.array().tolist() for name, col in steps.columns().items()}
{'rewards': [0.5], 'labels': [1.0, 0.0], 'terminated': [True], 'truncated': [False]}
"""

from __future__ import annotations

import array
import math
import sys
from typing import Any, Iterable

import numpy as np

_ITEMSIZE: dict[str, int] = {}  # np.dtype(str) costs ~1 us; a Column's length is read per episode


class Column:
    """A per-step field, packed from the episode's EpisodeSteps by whichever writer runs; made an array without a copy.

    ``values`` is the field's little-endian bytes (see :meth:`pack`): ``array.array`` packs them
    in C, with no numpy call (each costs several microseconds, and the sync writer runs on the
    env's thread). :meth:`array` (or ``np.asarray(column)``) views them as an array, so a Column
    goes wherever an array does.

    >>> Column.pack("d", [0.5, 1]).array()
    array([0.5, 1. ])
    """

    __slots__ = ("values", "dtype")

    #: array.array type code -> the stored dtype
    DTYPES = {"d": "<f8", "f": "<f4", "b": "|b1"}

    def __init__(self, values: bytes, dtype: str) -> None:
        self.values, self.dtype = values, dtype

    @classmethod
    def pack(cls, typecode: str, values: Iterable[Any]) -> "Column":
        """``values`` as a Column of ``DTYPES[typecode]`` (``"b"``: truth values, stored as 0/1).

        ``array.array`` converts in C, with the same errors as ``float()`` (e.g. for None).
        """
        if typecode == "b":
            return cls(bytes(map(bool, values)), "|b1")
        packed = array.array(typecode, values)
        if sys.byteorder != "little":  # pragma: no cover - the stored dtypes are little-endian
            packed.byteswap()
        return cls(packed.tobytes(), cls.DTYPES[typecode])

    def __len__(self) -> int:
        itemsize = _ITEMSIZE.get(self.dtype)
        if itemsize is None:
            itemsize = _ITEMSIZE[self.dtype] = np.dtype(self.dtype).itemsize
        return len(self.values) // itemsize

    @property
    def nbytes(self) -> int:
        return len(self.values)

    def array(self) -> np.ndarray:
        return np.frombuffer(self.values, dtype=self.dtype)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """numpy's array protocol: ``np.asarray(column)`` is :meth:`array` (read-only, no copy)."""
        arr = self.array()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr


class EpisodeSteps:
    """An episode's per-step scalars as the recorder saw them, turned into columns by the writer.

    ``steps`` holds one ``(reward, terminated, truncated, label)`` tuple per step, the values as
    the env returned them (``label`` already a float: the success flag of the step's new
    observation); ``reset_label`` is the reset frame's. Building the columns and the episode's
    return takes ~20 us of Python per episode; the recorder leaves it to the writer, which does
    it off the env's thread (the process writer sends the tuples, see :meth:`builtins`).
    ``builtin=True`` promises that every value is exactly a Python ``float`` or ``bool``.

    >>> steps = EpisodeSteps(0.0, [(0.5, False, False, 0.0), (1, True, False, 1.0)])
    >>> cols = steps.columns()
    >>> cols["rewards"].array().tolist(), cols["labels"].array().tolist(), steps.summary()
    ([0.5, 1.0], [0.0, 0.0, 1.0], {'return': 1.5, 'terminated': True, 'truncated': False})
    """

    __slots__ = ("reset_label", "steps", "builtin")

    def __init__(self, reset_label: float, steps: list[tuple[Any, Any, Any, float]], *, builtin: bool = False
                 ) -> None:
        self.reset_label, self.steps, self.builtin = reset_label, steps, builtin

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def nbytes(self) -> int:
        """Bytes of the columns: float64 rewards, float32 labels (one more), bool flags."""
        return 14 * len(self.steps) + 4

    def columns(self) -> dict[str, Column]:
        """``rewards``, ``labels`` (the reset frame's first), ``terminated`` and ``truncated``."""
        rewards, terminated, truncated, labels = zip(*self.steps) if self.steps else ((), (), (), ())
        return {
            "rewards": Column.pack("d", rewards),
            "labels": Column.pack("f", (self.reset_label, *labels)),
            "terminated": Column.pack("b", terminated),
            "truncated": Column.pack("b", truncated),
        }

    def summary(self) -> dict[str, Any]:
        """The ``meta.json`` entries that come from the steps: return and how the episode ended."""
        last = self.steps[-1] if self.steps else (0.0, False, False, 0.0)
        return {"return": math.fsum(step[0] for step in self.steps),
                "terminated": bool(last[1]), "truncated": bool(last[2])}

    def builtins(self) -> tuple[float, list[tuple[Any, ...]]]:
        """``(reset_label, steps)`` with every value a Python float or bool, as ``marshal`` needs.

        (``marshal`` would store a numpy scalar as its raw bytes, without a word.) Converted with
        ``float()``/``bool()``, as :meth:`columns` stores them (numpy scalars, one-element
        tensors); raises ``TypeError`` for a value neither accepts (e.g. None).
        """
        if self.builtin:
            return self.reset_label, self.steps
        return float(self.reset_label), [(float(r), bool(te), bool(tr), float(label))
                                         for r, te, tr, label in self.steps]
