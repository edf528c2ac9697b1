"""One declaration per reward wrapper, shared by its four twins.

A reward wrapper's options (names, defaults, types) and their validation are its core's keyword
arguments (:mod:`reward_wrappers.cores.rewards`), written once. Each twin (per env, SB3 VecEnv, gymnasium
vector, torch-batched) names its core in its class statement; the twin's base class checks the
model against the observation space and builds the core, and :class:`Twin` gives the twin the
explicit signature that ``help()``, ``inspect.signature`` and IPython's completion show:

>>> import inspect
>>> from reward_wrappers import VecPBRS, TorchPBRS
>>> str(inspect.signature(VecPBRS))
'(venv: VecEnv, potential: ModelLike, *, gamma: Optional[float] = None, min_confidence: Optional[float] = None, scale: float = 1.0, offset: float = 0.0)'
>>> list(inspect.signature(TorchPBRS).parameters)[-1]  # the torch twin's own extra option
'device'
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Sequence

__all__ = ["Twin", "MISSING"]

#: The model argument's default in the twins' base constructors: it may come by name instead.
MISSING: Any = object()

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


class _Hint(str):
    """A type hint shown as written: the cores' hints are strings (``from __future__ import
    annotations``), which ``inspect`` would otherwise print quoted."""

    def __repr__(self) -> str:
        return str(self)


def _shown(param: inspect.Parameter, kind: Any = None) -> inspect.Parameter:
    hint = param.annotation
    return param.replace(kind=kind or param.kind, annotation=_Hint(hint) if isinstance(hint, str) else hint)


class Twin:
    """Base of the reward wrappers' twin families: ``class X(Base, core=SomeCore, without=(...))``.

    ``core`` is the core class whose keyword-only constructor arguments are the wrapper's options
    (``without`` names those this twin cannot honour, e.g. ``terminate_on_success`` where the
    vector env decides its own resets); ``env_arg`` (the first argument's name and annotation) and
    ``extra_options`` (e.g. the vector twins' ``ops``) come from the twin's base class.
    """

    core_class: ClassVar[type]
    without: ClassVar[tuple[str, ...]] = ()
    model_arg: ClassVar[str] = "model"
    option_names: ClassVar[frozenset[str]] = frozenset()
    env_arg: ClassVar[tuple[str, str]] = ("env", "gym.Env")
    extra_options: ClassVar[tuple[inspect.Parameter, ...]] = ()

    def __init_subclass__(cls, core: type | None = None, without: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if core is None:  # a twin's subclass (the torch twins) keeps its core, with its own extra options
            core, without = getattr(cls, "core_class", None), getattr(cls, "without", ())
            if core is None:
                return
        params = list(inspect.signature(core).parameters.values())
        options = [p for p in params if p.kind is _KEYWORD and p.name not in without]
        cls.core_class, cls.without = core, tuple(without)
        cls.model_arg = params[0].name
        cls.option_names = frozenset(p.name for p in options)
        env_name, env_hint = cls.env_arg
        cls.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(env_name, _POSITIONAL, annotation=_Hint(env_hint)),
            _shown(params[0], _POSITIONAL),  # the model (``potential`` for PBRS)
            *(_shown(p) for p in (*options, *cls.extra_options)),
        ])

    def model_and_options(self, model: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The model (passed by position or by its name, ``potential`` for PBRS, as gymnasium's
        ``env.spec`` rebuilds a stack) and the options, checked as a call with explicit keywords would be."""
        if model is MISSING:
            if self.model_arg not in options:
                raise TypeError(f"{type(self).__name__}() missing 1 required argument: {self.model_arg!r}")
            options = dict(options)
            model = options.pop(self.model_arg)
        unknown = sorted(set(options) - self.option_names)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}")
        return model, options

    def expose(self, core: Any) -> None:
        """The attributes users read off the wrapper (``model``; ``gamma`` and ``potential`` for PBRS)."""
        for name, source in core.wrapper_attributes.items():
            setattr(self, name, getattr(core, source))
