"""Module paths from before the sub-packages (``models/``, ``cores/``, ``process/``) keep importing.

``import reward_wrappers.frame_nets`` (as the README once showed) gives the module that now lives
at ``reward_wrappers.models.frame_nets``: the same module object, so classes, ``isinstance`` and
architecture registrations are shared. Nothing is imported before an old path is asked for.

>>> import reward_wrappers.frame_nets, reward_wrappers.models.frame_nets
>>> reward_wrappers.frame_nets is reward_wrappers.models.frame_nets
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

#: old module path -> where it lives now
MOVED: dict[str, str] = {
    **{f"reward_wrappers.{name}": f"reward_wrappers.models.{name}" for name in (
        "backbones", "base", "checkpoint", "encoders", "frame_nets", "frames", "networks", "progress_networks",
        "registry", "transformer_net")},
    "reward_wrappers.core": "reward_wrappers.cores.rewards",
    "reward_wrappers.feed": "reward_wrappers.cores.feed",
    "reward_wrappers.ops": "reward_wrappers.cores.ops",
    "reward_wrappers.process_net": "reward_wrappers.process.net",
    "reward_wrappers.process_fusion": "reward_wrappers.process.fusion",
    "reward_wrappers.process_potential": "reward_wrappers.process.potential",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when ``create_module`` imported it under its own name."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (installed once, by ``reward_wrappers/__init__.py``)."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        new = MOVED.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
