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
from typing import Any, Callable

from reward_wrappers.models.registry import Registry

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

    def serve(self, venv: Any, model: Any, output: str | None = None, **options: Any) -> Any:
        """``venv`` paying this kind's reward from ``model`` (``options``: the wrapper's others, e.g. ``reward_at``)."""
        return self.wrapper(venv, model, output=output or self.default_output, **options)


def register_reward_kind(kind: RewardKind) -> RewardKind:
    """Add ``kind`` under ``kind.name`` (the same kind twice is a no-op; another is refused)."""
    if not isinstance(kind, RewardKind):
        raise TypeError(f"register_reward_kind takes a trainers.kinds.RewardKind, got {type(kind).__name__}")
    if not kind.name.isidentifier():
        raise ValueError(f"a kind's name must be an identifier (it is typed as --reward {kind.name}:PATH), got {kind.name!r}")
    return _KINDS.add(kind.name, kind, lambda current, new: current == new)


_KINDS = Registry(ENTRY_POINT_GROUP, "reward-model kind", "trainers.register_reward_kind(RewardKind(...))",
                  lambda name, kind: register_reward_kind(kind))


def reward_kinds() -> dict[str, RewardKind]:
    """Every registered kind by name (installed packages' included)."""
    return _KINDS.all()


def reward_kind(name: str) -> RewardKind:
    """The kind called ``name``, or a ``ValueError`` saying which exist and how to add one."""
    return _KINDS.get(name)


__all__ = ["ENTRY_POINT_GROUP", "RewardKind", "register_reward_kind", "reward_kind", "reward_kinds"]
