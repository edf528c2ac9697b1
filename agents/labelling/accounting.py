"""Every label a run stands on, counted once: trajectory marks plus answered queries.

A run's reward rests on labels from several places: the trajectories its classifier was fitted on
(each one's success mark: one label, ``trainers.data.trajectory_marks`` records their ids in the
checkpoint), the buffers a refit fine-tunes on, the demonstrations SAC replays, and the queries
answered during the run. A trajectory read by several of them is still one label, so marks are
counted as a set of ids.

>>> account = LabelAccount()
>>> account.add_marks(["a", "b"], "classifier data"); account.add_marks(["b", "c"], "demonstrations")
>>> account.used, account.summary()["trajectory_marks"]
(3, 3)
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional

from agents.labelling.queue import LabelQueue


class LabelAccount:
    """Trajectory marks (a set of ids, by where they were read) and the run's query queue."""

    def __init__(self, queue: Optional[LabelQueue] = None) -> None:
        self.queue = queue
        self.marks: set[str] = set()
        self.by_place: dict[str, int] = {}
        self.unknown: list[str] = []

    def add_marks(self, ids: Iterable[str], place: str) -> None:
        ids = {str(i) for i in ids}
        self.marks |= ids
        self.by_place[place] = len(ids)

    def add_checkpoint(self, model: Any, place: str) -> None:
        """The marks a checkpoint's fit used (``metadata["labels"]``); older checkpoints lack the record
        and are listed under ``unknown`` rather than counted as zero."""
        record = (getattr(model, "metadata", None) or {}).get("labels")
        if isinstance(record, dict) and isinstance(record.get("trajectory_ids"), list):
            self.add_marks(record["trajectory_ids"], place)
        elif getattr(model, "metadata", None) is not None:
            self.unknown.append(place)

    def add_buffer(self, trajectories: Iterable[Any], place: str) -> None:
        self.add_marks((t.id for t in trajectories), place)

    @property
    def queries(self) -> int:
        return 0 if self.queue is None else self.queue.used

    @property
    def used(self) -> int:
        """All labels: distinct trajectory marks plus answered queries."""
        return len(self.marks) + self.queries

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.used, "trajectory_marks": len(self.marks), "queries": self.queries,
                               "marks_by_place": dict(self.by_place)}
        if self.queue is not None:
            out.update(source=self.queue.source, budget=self.queue.budget, open_queries=len(self.queue.open()),
                       reused_from_earlier_run=self.queue.reused)
        if self.unknown:
            out["uncounted"] = [f"{place}: its checkpoint does not record its trajectories (fitted before label "
                                f"accounting); refit it to count them" for place in self.unknown]
        return out


def buffer_ids(directory: str | os.PathLike[str]) -> list[str]:
    from collectors import load_trajectories

    return [t.id for t in load_trajectories(directory)]


__all__ = ["LabelAccount", "buffer_ids"]
