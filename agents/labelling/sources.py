"""Who answers the reward's questions: ``--labeller env | web | module:callable``, one parser.

* ``env``: the env's own success flag stands in for a person (benchmarks). Refused where the env
  reports no flag. Every flag it reads is a label, counted like a person's answer.
* ``module:callable``: ``callable(frames)`` receives a dict of the queried frames' observations
  (every key the run keeps, images uint8 HWC, plus ``episode`` and ``step`` int64 arrays) and
  returns one answer per frame: True (success), False, or None (no answer, costs no label).
* ``web``: a person on the local labelling page (:mod:`agents.labelling.server`); answers arrive
  while the run goes on.

>>> src = parse_labeller("env")
>>> src.name, src.live
('env', False)
>>> check_answers([True, None, np.bool_(False)], 3, "doctest")
[True, None, False]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from reward_wrappers.models.base import import_function

Answers = list[Optional[bool]]


def check_answers(answers: Any, n: int, who: str) -> Answers:
    """``answers`` as a list of True/False/None of length ``n``; a ValueError naming ``who`` otherwise."""
    try:
        values = list(answers)
    except TypeError:
        raise ValueError(f"labeller {who} returned {type(answers).__name__}, expected a sequence of {n} answers "
                         "(True, False or None per frame)") from None
    if len(values) != n:
        raise ValueError(f"labeller {who} returned {len(values)} answers for {n} frames")
    out: Answers = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, (bool, np.bool_)):
            out.append(None if v is None else bool(v))
        else:
            raise ValueError(f"labeller {who}: answer {i} is {v!r} ({type(v).__name__}); expected True, False or None")
    return out


@dataclass
class LabelSource:
    """A labeller. ``live`` sources answer later, from a page; the others answer when asked."""

    name: str
    live: bool = False
    fn: Optional[Callable[[dict[str, np.ndarray]], Any]] = None

    def answer(self, frames: dict[str, np.ndarray], truth: Callable[[], np.ndarray]) -> Optional[Answers]:
        """Answers for a batch of frames now (None for a live source: a person answers later).
        ``truth`` reads the env's flags: only the ``env`` source calls it."""
        if self.live:
            return None
        n = len(frames["episode"])
        if self.fn is None:  # env
            return [bool(v) for v in np.asarray(truth()).reshape(-1)]
        return check_answers(self.fn(frames), n, self.name)


def parse_labeller(spec: str) -> LabelSource:
    """``env``, ``web`` or ``module:callable`` (imported now, so a typo fails before any run)."""
    if spec in ("env", "web"):
        return LabelSource(spec, live=spec == "web")
    if ":" not in spec:
        raise ValueError(f"--labeller {spec!r} not understood: use env, web or module:callable")
    fn = import_function(spec, "--labeller")
    return LabelSource(spec, fn=fn)


def with_ids(frames: dict[str, np.ndarray], episodes: Sequence[int], steps: Sequence[int]) -> dict[str, np.ndarray]:
    """What a callable labeller receives: the frames plus ``episode`` and ``step`` arrays."""
    return {**frames, "episode": np.asarray(episodes, np.int64), "step": np.asarray(steps, np.int64)}


__all__ = ["LabelSource", "parse_labeller", "check_answers", "with_ids"]
