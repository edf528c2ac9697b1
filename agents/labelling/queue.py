"""The questions a run asks its labeller, their answers, and the budget: persisted as they happen.

A :class:`LabelQueue` lives in ``RUN_DIR/labels/``:

* ``queries/q<id>.npz``: the frames of one asked query (every key the page shows or a refit reads),
  with its episode, step and the model's score; written atomically when it is asked.
* ``answers.jsonl``: one line per answer, appended, flushed and fsynced as it arrives
  (``{"query": id, "label": true|false|null, "source": ..., "unix": ...}``; null is a skip). A kill
  loses at most the answer being written; a torn last line is ignored on reading.

A run restarted on the same directory reads both back: answered queries are reused (never charged
again) and unanswered ones wait on the page again. **Accounting**: an answer of true or false is
one label, charged when it arrives; a skip costs nothing. The budget holds across restarts, and
the queue never holds more open queries than the budget has left, so no answer can exceed it.

>>> import tempfile, numpy as np
>>> q = LabelQueue(tempfile.mkdtemp(), budget=2, source="doctest")
>>> asked = q.ask({"state": np.zeros((3, 2), np.float32)}, episodes=[0, 0, 1], steps=[4, 5, 2], scores=[0.9, 0.2, 0.7])
>>> [a.id for a in asked], q.can_ask  # two fit the budget; the third is not asked
([0, 1], 0)
>>> q.answer(0, True); q.answer(1, None)  # a skip frees its place
>>> q.used, q.remaining, q.can_ask, [a.label for a in q.answered()]
(1, 1, 1, [True])
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from collectors.atomic import write_atomic

#: npz entries of a query that are not observation keys
_IDS = ("__episode", "__step", "__score", "__called", "__uniform")


@dataclass
class Query:
    """One frame put to the labeller. ``label`` is None while open (or after a skip)."""

    id: int
    frames: dict[str, np.ndarray]
    episode: int
    step: int
    score: float
    called: bool = False  # the reward called this frame a success when it was asked
    uniform: bool = False  # drawn uniformly within its stratum (called or not): feeds the estimates
    label: Optional[bool] = None
    status: str = "open"  # open | answered | skipped


class LabelQueue:
    """Open queries, answers and the label budget of one run (see the module docstring).

    Thread-safe: a web page answers from its server's threads while the run asks and reads.
    """

    def __init__(self, directory: str | os.PathLike[str], budget: int, source: str) -> None:
        if budget < 0:
            raise ValueError(f"--label-budget must be >= 0, got {budget}")
        self.dir = Path(directory)
        self.budget = int(budget)
        self.source = source
        self.queries: dict[int, Query] = {}
        self._lock = threading.RLock()
        (self.dir / "queries").mkdir(parents=True, exist_ok=True)
        self._answers_path = self.dir / "answers.jsonl"
        self.reused = self._load()
        self._next_id = max(self.queries, default=-1) + 1

    # ----------------------------------------------------------------------------- persistence
    def _load(self) -> int:
        for path in sorted((self.dir / "queries").glob("q*.npz")):
            with np.load(path, allow_pickle=False) as data:
                frames = {k: data[k] for k in data.files if k not in _IDS}
                qid = int(path.stem[1:])
                self.queries[qid] = Query(qid, frames, int(data["__episode"]), int(data["__step"]), float(data["__score"]),
                                          bool(data["__called"]), bool(data["__uniform"]) if "__uniform" in data.files else False)
        if self._answers_path.is_file():
            for line in self._answers_path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    query = self.queries[int(record["query"])]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line (killed mid-write), or a query file that never landed
                self._apply(query, record["label"])
        return self.used

    def _apply(self, query: Query, label: Optional[bool]) -> None:
        query.label = None if label is None else bool(label)
        query.status = "skipped" if label is None else "answered"

    def _save_query(self, query: Query) -> None:
        buf = io.BytesIO()
        np.savez(buf, **query.frames, __episode=query.episode, __step=query.step, __score=query.score,
                 __called=query.called, __uniform=query.uniform)
        write_atomic(self.dir / "queries" / f"q{query.id:06d}.npz", buf.getvalue())

    # ----------------------------------------------------------------------------- counts
    @property
    def used(self) -> int:
        """Labels spent: answers of true or false, this run's and reused ones."""
        with self._lock:
            return sum(q.status == "answered" for q in self.queries.values())

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def open(self) -> list[Query]:
        with self._lock:
            return [q for q in self.queries.values() if q.status == "open"]

    @property
    def can_ask(self) -> int:
        """How many more queries may be opened now: the budget left, less the open ones."""
        return max(0, self.remaining - len(self.open()))

    def answered(self) -> list[Query]:
        with self._lock:
            return [q for q in self.queries.values() if q.status == "answered"]

    # ----------------------------------------------------------------------------- asking, answering
    def ask(self, frames: dict[str, np.ndarray], episodes: Sequence[int], steps: Sequence[int],
            scores: Sequence[float], called: Optional[Sequence[bool]] = None,
            uniform: Optional[Sequence[bool]] = None) -> list[Query]:
        """Open one query per row of ``frames`` (as many as :attr:`can_ask` allows, the first rows);
        ``called``: whether the reward called each frame a success; ``uniform``: whether it was drawn
        uniformly (``agents.labelling.choice``). Return the queries opened."""
        with self._lock:
            n = min(len(episodes), self.can_ask)
            opened = []
            for row in range(n):
                query = Query(self._next_id, {k: np.array(v[row]) for k, v in frames.items()}, int(episodes[row]),
                              int(steps[row]), float(scores[row]), bool(called[row]) if called is not None else False,
                              bool(uniform[row]) if uniform is not None else False)
                self._next_id += 1
                self._save_query(query)
                self.queries[query.id] = query
                opened.append(query)
            return opened

    def answer(self, query_id: int, label: Optional[bool]) -> None:
        """Record an answer (None: skip, free). Refused for a query that is not open."""
        with self._lock:
            query = self.queries.get(int(query_id))
            if query is None or query.status != "open":
                raise KeyError(f"query {query_id} is not open (answered, skipped or never asked)")
            if label is not None and self.used >= self.budget:  # pragma: no cover - can_ask keeps this away
                raise ValueError(f"the label budget ({self.budget}) is spent")
            record = {"query": query.id, "label": None if label is None else bool(label), "source": self.source,
                      "unix": time.time()}
            with open(self._answers_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._apply(query, label)

    def counts(self) -> dict[str, Any]:
        """What every report says of the labels: source, budget, used, open, reused."""
        return {"source": self.source, "budget": self.budget, "used": self.used, "open": len(self.open()),
                "reused_from_earlier_run": self.reused}


__all__ = ["LabelQueue", "Query"]
