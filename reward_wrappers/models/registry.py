"""Network architectures by name: what a checkpoint's ``arch.name`` resolves to.

A checkpoint names its architecture, never a module: loading one runs no code the file chooses.
Built-in architectures register when their modules are imported (``reward_wrappers`` imports
them all); another installed package adds its own through the entry-point group
:data:`ENTRY_POINT_GROUP` (``name = "package.module:ArchitectureClass"``), which is read, in any
fresh process, the first time a name is not found. In-process code calls
:func:`register_architecture`.

An architecture is an ``nn.Module`` class built as ``cls(spec, **kwargs)`` from the checkpoint's
:class:`~reward_wrappers.models.base.ModelSpec` and JSON kwargs; its ``forward(batch)`` returns
``(B, >=1)`` with the model's output in the first column.

>>> import torch.nn as nn
>>> class Constant(nn.Module):
...     def __init__(self, spec, value=0.0):
...         super().__init__()
...         self.value = value
>>> _ = register_architecture("constant_example", Constant)
>>> architecture_class("constant_example") is Constant
True
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable

#: Entry-point group through which installed packages provide architectures.
ENTRY_POINT_GROUP = "rewardswap.architectures"


class Registry:
    """Entries by name, plus an entry-point group that installed packages add to, read the first
    time a name is missing (and when all entries are listed). Architectures here and reward-model
    kinds (``trainers.kinds``) are both one of these.

    ``load(name, obj)`` registers what an entry point provides; ``how`` (formatted with ``name``)
    tells the user how to register in-process.
    """

    def __init__(self, group: str, what: str, how: str, load: Callable[[str, Any], Any]) -> None:
        self.group, self.what, self.how, self._load = group, what, how, load
        self._entries: dict[str, Any] = {}

    def add(self, name: str, value: Any, same: Callable[[Any, Any], bool]) -> Any:
        """Register ``value`` as ``name``; one ``same`` as the current entry is a no-op, another is refused."""
        current = self._entries.get(name)
        if current is not None and not same(current, value):
            raise ValueError(f"{self.what} {name!r} is already registered as {current!r:.120}")
        self._entries[name] = value
        return value

    def _load_entry_points(self) -> None:
        for entry in metadata.entry_points(group=self.group):
            if entry.name not in self._entries:
                self._load(entry.name, entry.load())

    def get(self, name: str) -> Any:
        """The entry ``name``, or a ``ValueError`` saying which exist and how to add one."""
        if name not in self._entries:
            self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.what} {name!r}; known: {sorted(self._entries)}. Register it with "
                f"{self.how.format(name=name)} in this process, or install the package that provides it "
                f"(entry-point group {self.group!r})"
            ) from None

    def all(self) -> dict[str, Any]:
        """Every entry by name (installed packages' included)."""
        self._load_entry_points()
        return dict(self._entries)


def _same_class(current: Any, cls: Any) -> bool:
    # The same class imported twice (a module run as a script and imported) is no conflict.
    return current is cls or current.__qualname__ == cls.__qualname__


def register_architecture(name: str, cls: Any) -> Any:
    """Make ``cls`` the architecture called ``name`` (returns ``cls``). Re-registering the same
    class is a no-op; another class under a taken name is refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an architecture name must be a non-empty string, got {name!r}")
    return _ARCHITECTURES.add(name, cls, _same_class)


_ARCHITECTURES = Registry(ENTRY_POINT_GROUP, "architecture", "reward_wrappers.register_architecture({name!r}, cls)",
                          register_architecture)


def architecture_class(name: str) -> Any:
    """The class registered as ``name``; installed packages' entry points are read on a miss."""
    return _ARCHITECTURES.get(name)


def architectures() -> list[str]:
    """Every registered architecture name (installed packages' included)."""
    return sorted(_ARCHITECTURES.all())


__all__ = ["ENTRY_POINT_GROUP", "Registry", "architecture_class", "architectures", "register_architecture"]
