"""Reward-model kinds by name: how ``train-reward KIND`` fits one and which wrapper pays its reward.

A kind is one module that declares a :class:`RewardKind` and registers it: its CLI options
(``add_arguments``) and entry (``run``), the SB3 wrapper that serves it in ``train-agent`` and
``bench`` (``--reward KIND:PATH``) and the wrapper output used when ``--reward-output`` is not
given. Its networks are architectures (``reward_wrappers.register_architecture``), which is all a
checkpoint names. The built-in kinds (``classifier``, ``progress``, ``preference``) register when
``trainers`` is imported; an installed package adds its own through the entry-point group
:data:`ENTRY_POINT_GROUP` (``name = "package.module:KIND"``, a :class:`RewardKind`), read in any
fresh process.

Adding a kind in Python::

    register_reward_kind(RewardKind("my_kind", "what it fits", add_arguments, run,
                                    wrapper=VecLearnedReward, default_output="prob"))
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

#: Entry-point group through which installed packages provide reward-model kinds.
ENTRY_POINT_GROUP = "rewardswap.reward_kinds"


@dataclass(frozen=True)
class RewardKind:
    """One kind of reward model: how to fit it from the CLI and how an agent is paid by it.

    ``wrapper(venv, model, output=...)`` is an SB3 ``VecEnvWrapper`` class (``VecLearnedReward``,
    ``VecProgressReward`` or one of the kind's own); ``default_output`` its ``output`` unless the
    user passes ``--reward-output``.
    """

    name: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    wrapper: Any
    default_output: str

    def serve(self, venv: Any, model: Any, output: str | None = None) -> Any:
        """``venv`` paying this kind's reward from ``model``."""
        return self.wrapper(venv, model, output=output or self.default_output)


_KINDS: dict[str, RewardKind] = {}


def register_reward_kind(kind: RewardKind) -> RewardKind:
    """Add ``kind`` under ``kind.name`` (the same object twice is a no-op; another is refused)."""
    if not isinstance(kind, RewardKind):
        raise TypeError(f"register_reward_kind takes a trainers.kinds.RewardKind, got {type(kind).__name__}")
    if not kind.name.isidentifier():
        raise ValueError(f"a kind's name must be an identifier (it is typed as --reward {kind.name}:PATH), got {kind.name!r}")
    current = _KINDS.get(kind.name)
    if current is not None and current != kind:
        raise ValueError(f"reward kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def _load_entry_points() -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _KINDS:
            register_reward_kind(entry.load())


def reward_kinds() -> dict[str, RewardKind]:
    """Every registered kind by name (installed packages' included)."""
    _load_entry_points()
    return dict(_KINDS)


def reward_kind(name: str) -> RewardKind:
    """The kind called ``name``, or a ``ValueError`` saying which exist and how to add one."""
    if name not in _KINDS:
        _load_entry_points()
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(
            f"unknown reward-model kind {name!r}; known: {sorted(_KINDS)}. Register it with "
            f"trainers.register_reward_kind(...) or install the package that provides it (entry-point group "
            f"{ENTRY_POINT_GROUP!r})"
        ) from None


__all__ = ["ENTRY_POINT_GROUP", "RewardKind", "register_reward_kind", "reward_kind", "reward_kinds"]
