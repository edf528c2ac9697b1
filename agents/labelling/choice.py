"""Which frames to ask about, and what the answers say about the reward (few labels, VICE-RAQ style).

Each refit's questions come in two parts:

* a **uniform** share (:data:`UNIFORM_SHARE`, at least one question): frames drawn uniformly within
  two strata, those the reward calls successes and the others. Only these feed the estimates
  (:func:`estimates`), so the estimates stay unbiased however the rest is chosen;
* a **targeted** rest: frames the reward calls successes (a wrong one there is what an agent
  exploits), the least certain first (score closest to the threshold), one per episode before a
  second from any episode (diverse). Where it calls fewer frames successes than that, fewer
  questions are asked: the budget waits for the frames that matter.

``estimates`` turns the uniform answers into the precision of the reward's success decision, its
miss rate, and the prior (the fraction of the agent's frames that are successes) the PU refit needs.

>>> scores = np.array([0.9, 0.95, 0.6, 0.1, 0.2, 0.55])
>>> chosen, uniform = choose_queries(scores, 0.5, np.array([0, 0, 1, 1, 2, 2]), 4, np.random.default_rng(0))
>>> sorted(chosen.tolist()), int(uniform.sum())
([0, 1, 2, 5], 1)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

#: Share of each refit's questions drawn uniformly (within the called / not-called strata).
UNIFORM_SHARE = 0.25
#: Uniform answers on called frames before the precision estimate is trusted to hold spending back.
MIN_ANSWERS_FOR_ESTIMATE = 5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _diverse(order: np.ndarray, episodes: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` of ``order`` taking one frame per episode per round (order kept within a round)."""
    picked: list[int] = []
    seen_round: dict[int, int] = {}
    rounds: list[list[int]] = []
    for i in order:
        r = seen_round.get(int(episodes[i]), 0)
        seen_round[int(episodes[i])] = r + 1
        while len(rounds) <= r:
            rounds.append([])
        rounds[r].append(int(i))
    for frames in rounds:
        picked.extend(frames[: n - len(picked)])
        if len(picked) >= n:
            break
    return np.array(picked, np.int64)


def choose_queries(scores: np.ndarray, threshold: float, episodes: np.ndarray, allowance: int,
                   rng: np.random.Generator, uniform_share: float = UNIFORM_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the frames to ask about (at most ``allowance``) and which of them are uniform draws."""
    n = len(scores)
    allowance = min(int(allowance), n)
    if allowance <= 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    called = scores > threshold
    n_uniform = min(allowance, max(1, math.ceil(uniform_share * allowance)))
    strata = [np.flatnonzero(called), np.flatnonzero(~called)]
    uniform: list[int] = []
    for k, stratum in enumerate(strata):  # half to each stratum, the rest to the other where one runs short
        want = (n_uniform + 1) // 2 if k == 0 else n_uniform - len(uniform)
        take = min(want, len(stratum))
        uniform += rng.choice(stratum, take, replace=False).tolist() if take else []
    if len(uniform) < n_uniform:  # the called stratum was short: top up from the others
        left = np.setdiff1d(strata[1], uniform)
        uniform += rng.choice(left, min(n_uniform - len(uniform), len(left)), replace=False).tolist()
    rest = np.setdiff1d(np.arange(n), uniform)
    margin = np.abs(_logit(scores[rest]) - _logit(np.array([threshold]))[0])
    part = called[rest]  # only frames the reward pays: the rest of the budget waits until there are some
    targeted = _diverse(rest[part][np.argsort(margin[part], kind="stable")], episodes, allowance - len(uniform))
    chosen = np.concatenate([np.array(uniform, np.int64), targeted])
    return chosen, np.arange(len(chosen)) < len(uniform)


def estimates(answered: Sequence[Any], called_rate: float) -> dict[str, Any]:
    """From the uniform answers (queries with ``uniform``, ``called`` and ``label``): the precision of
    the success decision, its miss rate, and the prior ``called_rate * precision + (1 - called_rate) *
    miss rate``. Without answers in a stratum its figure is unknown (None); the prior then assumes a
    precision of 1 and no misses, i.e. it trusts the current decision, which nothing can check.

    >>> from types import SimpleNamespace as Q
    >>> qs = [Q(uniform=True, called=True, label=l) for l in (True, True, False, True)] + [Q(uniform=True, called=False, label=False)]
    >>> estimates(qs, called_rate=0.2)["prior"]
    0.15
    """
    uniform = [q for q in answered if getattr(q, "uniform", False)]
    on_called = [q.label for q in uniform if q.called]
    on_others = [q.label for q in uniform if not q.called]
    precision = sum(on_called) / len(on_called) if on_called else None
    miss = sum(on_others) / len(on_others) if on_others else None
    prior = called_rate * (1.0 if precision is None else precision) + (1 - called_rate) * (miss or 0.0)
    return {"precision": precision, "miss_rate": miss, "prior": round(float(prior), 6),
            "uniform_answers_called": len(on_called), "uniform_answers_other": len(on_others)}


__all__ = ["choose_queries", "estimates", "UNIFORM_SHARE", "MIN_ANSWERS_FOR_ESTIMATE"]
