"""Network architectures by name: what a checkpoint's ``arch.name`` resolves to.

A checkpoint names its architecture, never a module: loading one runs no code the file chooses.
Built-in architectures register when their modules are imported (``reward_wrappers`` imports
them all); another installed package adds its own through the entry-point group
:data:`ENTRY_POINT_GROUP` (``name = "package.module:ArchitectureClass"``), which is read, in any
fresh process, the first time a name is not found. In-process code calls
:func:`register_architecture`.

An architecture is an ``nn.Module`` class built as ``cls(spec, **kwargs)`` from the checkpoint's
:class:`~reward_wrappers.base.ModelSpec` and JSON kwargs; its ``forward(batch)`` returns
``(B, >=1)`` with the model's output in the first column.

>>> import torch.nn as nn
>>> class Constant(nn.Module):
...     def __init__(self, spec, value=0.0):
...         super().__init__()
...         self.value = value
>>> register_architecture("constant_example", Constant)
>>> architecture_class("constant_example") is Constant
True
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

#: Entry-point group through which installed packages provide architectures.
ENTRY_POINT_GROUP = "rewardswap.architectures"

_ARCHITECTURES: dict[str, Any] = {}


def register_architecture(name: str, cls: Any) -> Any:
    """Make ``cls`` the architecture called ``name`` (returns ``cls``, so it works as a decorator
    helper). Re-registering the same class is a no-op; another class under a taken name is refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an architecture name must be a non-empty string, got {name!r}")
    current = _ARCHITECTURES.get(name)
    if current is not None and current is not cls and current.__qualname__ != cls.__qualname__:
        raise ValueError(f"architecture {name!r} is already registered as {current.__module__}.{current.__qualname__}")
    _ARCHITECTURES[name] = cls
    return cls


def _load_entry_points() -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _ARCHITECTURES:
            register_architecture(entry.name, entry.load())


def architecture_class(name: str) -> Any:
    """The class registered as ``name``; installed packages' entry points are read on a miss."""
    if name not in _ARCHITECTURES:
        _load_entry_points()
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; known: {sorted(_ARCHITECTURES)}. Register it with "
            f"reward_wrappers.register_architecture({name!r}, cls) in this process, or install the package that "
            f"provides it (entry-point group {ENTRY_POINT_GROUP!r})"
        ) from None


def architectures() -> list[str]:
    """Every registered architecture name (installed packages' included)."""
    _load_entry_points()
    return sorted(_ARCHITECTURES)


__all__ = ["ENTRY_POINT_GROUP", "architecture_class", "architectures", "register_architecture"]
