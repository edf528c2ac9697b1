"""In-training refits of a success classifier under a label budget (HIL-SERL's correction step).

Every ``every`` env steps (checked at the end of a rollout, so one rollout's rewards always come
from one model), :class:`RefitCallback`:

1. scores the agent's recent frames (kept by :class:`VecTransitionFrames`, the reward model's own
   inputs) with the current classifier;
2. asks the labeller (``--labeller``: a person on the labelling page, a function, or the env's
   flag standing in for one; :mod:`agents.labelling`) about some of them
   (:mod:`agents.labelling.choice`): a uniform share, which alone feeds the estimates of the
   reward's precision and of the prior below, and the frames it calls successes that it is least
   sure of, one per episode first (none while it calls none: the budget waits). While the uniform
   answers say precision holds, only the uniform share is asked: the budget goes where the reward
   is wrong. Each answer costs one label; nothing
   is asked beyond the budget (0 is allowed). A page's answers arrive while training goes on: each
   refit uses those that have arrived;
3. fine-tunes the classifier on its original buffers plus every frame answered so far (the
   answered frames take half of each class's share of a batch) and, unless ``--agent-frames off``,
   the agent's recent frames as *unlabelled* data (positive-unlabelled loss with the estimated
   prior; VICE's "every agent frame is a failure" would stop paying an agent that really
   succeeds). Its threshold is raised where needed to reach ``precision`` on held-out frames
   (false positives are what the agent exploits). It is saved as ``refits/refit_<k>.pt`` (with its
   label count) and swapped into the run's reward wrappers (a
   :class:`~reward_wrappers.models.base.SwappableModel`, in this process only);
4. recomputes every reward stored in an off-policy replay buffer (:mod:`agents.replay`).
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.labelling.accounting import LabelAccount
from agents.labelling.choice import MIN_ANSWERS_FOR_ESTIMATE, UNIFORM_SHARE, choose_queries, estimates
from agents.labelling.queue import LabelQueue
from agents.labelling.sources import LabelSource, with_ids
from collectors import load_trajectories
from reward_wrappers import load_reward_model
from reward_wrappers.models.base import SwappableModel
from reward_wrappers.cores.rewards import output_kind, success_score
from reward_wrappers.cores.ops import NumpyOps
from reward_wrappers.transitions import VecTransitionFrames, predict_in_chunks
from trainers.classifier import fit_classifier

#: Labelled frames per pseudo-trajectory, so the refit's split by trajectory can hold some out.
CHUNK = 32
#: Agent frames a refit reads as unlabelled data (a uniform sample of the recent ring).
MAX_UNLABELLED = 2048
#: The PU prior is capped: a refit always pushes some of the agent's mass towards failure.
MAX_PRIOR = 0.9
#: A refit may raise its threshold for precision, never set it below this: with balanced batches
#: 0.5 is the decision boundary, and lower thresholds, found on a handful of held-out frames,
#: swung between 0.06 and 0.84 from one refit to the next and paid the agent false positives.
MIN_REFIT_THRESHOLD = 0.5


@dataclass
class LabelledFrames:
    """Frames labelled during training, shaped like a recorded trajectory for the trainers."""

    obs: dict[str, np.ndarray]
    labels: np.ndarray
    id: str

    @property
    def success(self) -> bool:
        return bool(np.max(self.labels) > 0.5)

    @property
    def path(self) -> str:
        return f"<labelled during training: {self.id}>"


class RefitCallback(BaseCallback):
    """See the module docstring. ``base_data`` is the classifier's original buffer directory."""

    def __init__(self, *, model: SwappableModel, frames: VecTransitionFrames, queue: LabelQueue, source: LabelSource,
                 base_data: str, every: int, run_dir: str | pathlib.Path, epochs: int = 3,
                 lr: float = 1e-4, seed: int = 0, monitor: Any = None, precision: float | None = 0.95,
                 account: Optional[LabelAccount] = None, unlabelled: bool = True, verbose: int = 1) -> None:
        super().__init__(verbose)
        self.live = model
        self.frames = frames
        self.queue = queue
        self.source = source
        self.account = account if account is not None else LabelAccount(queue)
        self.base_data = base_data
        self.every = int(every)
        self.run_dir = pathlib.Path(run_dir)
        self.epochs, self.lr, self.seed = int(epochs), float(lr), int(seed)
        self.monitor = monitor
        self.precision = precision
        self.unlabelled = bool(unlabelled)
        self.rng = np.random.default_rng(seed)
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._last = 0
        self._fitted: set[int] = set()  # query ids the current model was fitted on
        self._base: Optional[list[Any]] = None

    def _on_step(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``agents.checkpoint``): the records, the model in use (the last
        refit's file), the answers it was fitted on and the random generator."""
        return {"records": self.records, "seconds": self.seconds, "last": self._last, "fitted": sorted(self._fitted),
                "rng": self.rng.bit_generator.state,
                "model": str(self.run_dir / "refits" / f"refit_{len(self.records):03d}.pt") if self.records else None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.records, self.seconds, self._last = list(state["records"]), float(state["seconds"]), int(state["last"])
        self._fitted = set(state["fitted"])
        self.rng.bit_generator.state = state["rng"]
        if state["model"] is not None:
            self.live.swap(load_reward_model(state["model"]))
            self._base = list(load_trajectories(self.base_data))
            self.account.add_buffer(self._base, "refit data")

    def _on_rollout_end(self) -> None:
        # No refit once the step budget is reached: nothing would train on it.
        finished = self.num_timesteps >= getattr(self.model, "_total_timesteps", float("inf"))
        if self.num_timesteps - self._last >= self.every and not finished:
            self._last = self.num_timesteps
            self.refit()

    def _scores(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """What the wrappers compare with the threshold: the probability, for a classifier."""
        return success_score(predict_in_chunks(self.live.predict, frames), output_kind(self.live), NumpyOps())

    def _allowance(self, called_rate: float) -> int:
        """This refit's questions: an even share of what the budget has left over the refits still to
        come (so a budget unspent early, while the reward calls nothing a success, goes to later
        ones), or only the uniform share while the uniform answers say the reward's precision holds
        (``refit_precision``): the budget is spent when precision falls, not on a schedule."""
        total = getattr(self.model, "_total_timesteps", self.num_timesteps + self.every)
        refits_left = max(1, math.ceil((total - self.num_timesteps) / self.every))
        share = math.ceil(self.queue.can_ask / refits_left)
        figures = estimates(self.queue.answered(), called_rate)
        holding = (figures["uniform_answers_called"] >= MIN_ANSWERS_FOR_ESTIMATE and self.precision is not None
                   and figures["precision"] >= self.precision)
        return min(share, max(1, math.ceil(UNIFORM_SHARE * share))) if holding else share

    def ask(self, frames: dict[str, np.ndarray], scores: np.ndarray, threshold: float) -> int:
        """Put this refit's questions to the labeller; a source that answers at once answers now."""
        called = scores > threshold
        allowance = self._allowance(float(called.mean()) if len(called) else 0.0)
        if allowance <= 0:
            return 0
        episodes, steps = self.frames.recent_ids()
        chosen, uniform = choose_queries(scores, threshold, episodes, allowance, self.rng)
        episodes, steps = episodes[chosen], steps[chosen]
        asked = self.queue.ask({k: v[chosen] for k, v in frames.items()}, episodes, steps, scores[chosen], called[chosen],
                               uniform)
        chosen = chosen[: len(asked)]
        answers = self.source.answer(with_ids({k: v[chosen] for k, v in frames.items()}, episodes, steps),
                                     truth=lambda: self.frames.true_success(chosen))
        for query, label in zip(asked, answers or ()):
            self.queue.answer(query.id, label)
        return len(asked)

    def agent_frames(self, frames: dict[str, np.ndarray]) -> Optional[dict[str, np.ndarray]]:
        """At most :data:`MAX_UNLABELLED` of the agent's recent frames (the model's keys), drawn uniformly."""
        if not self.unlabelled:
            return None
        n = len(next(iter(frames.values())))
        rows = np.sort(self.rng.choice(n, min(n, MAX_UNLABELLED), replace=False))
        return {k: np.ascontiguousarray(frames[k][rows]) for k in self.frames.keys}

    def refit(self) -> Optional[dict[str, Any]]:
        """Ask, then fine-tune on every answer so far (and the agent's frames), swap, relabel; return
        what happened (None when there is nothing new to fit: no new answer, agent frames off)."""
        start = time.perf_counter()
        frames = self.frames.recent_frames(display=True)
        scores = self._scores({k: frames[k] for k in self.frames.keys})
        threshold = float(self.live.spec.threshold) if self.live.spec is not None else 0.5
        called = scores > threshold
        asked = self.ask(frames, scores, threshold)
        answered = self.queue.answered()
        new = [q for q in answered if q.id not in self._fitted]
        if not new and not self.unlabelled:
            return None  # nothing new to learn from
        unlabelled = self.agent_frames(frames)
        figures = estimates(answered, float(called.mean()) if len(called) else 0.0)
        prior = min(figures["prior"], MAX_PRIOR)
        k = len(self.records) + 1
        labelled = [LabelledFrames({key: np.stack([q.frames[key] for q in chunk]) for key in self.frames.keys},
                                   np.array([q.label for q in chunk], np.float32), f"answers{k}_{c}")
                    for c, chunk in enumerate(answered[i : i + CHUNK] for i in range(0, len(answered), CHUNK))]
        if self._base is None:
            self._base = list(load_trajectories(self.base_data))
            self.account.add_buffer(self._base, "refit data")
        was_called = np.array([q.called for q in new], bool)
        truth = np.array([q.label for q in new], bool)
        record = {
            "refit": k,
            "steps": int(self.num_timesteps),
            "asked": asked,
            "answers_used": len(answered),
            "new_answers": len(new),
            "open_queries": len(self.queue.open()),
            "new_called_success": int(was_called.sum()),
            "frames_called_success": int(called.sum()),
            "frames_scored": int(len(called)),
            "unlabelled_frames": 0 if unlabelled is None else len(next(iter(unlabelled.values()))),
            "estimates": figures,
            "prior": prior,
            "false_positives_found": int((was_called & ~truth).sum()),
            "missed_successes_found": int((~was_called & truth).sum()),
            "query_ids": [q.id for q in answered],
            "labels_used": self.account.used,
            "labels": self.account.summary(),
            "labels_remaining": self.queue.remaining,
        }
        out = self.run_dir / "refits" / f"refit_{k:03d}.pt"
        current = getattr(self.live, "current", self.live)
        path = fit_classifier(self._base, out, focus=labelled, epochs=self.epochs, lr=self.lr, seed=self.seed + k,
                              progress=False, init=current, metadata={"refit": record},
                              threshold_precision=self.precision, min_threshold=MIN_REFIT_THRESHOLD,
                              unlabelled=unlabelled, prior=prior)
        new_model = load_reward_model(path)
        if self.monitor is not None:
            self.monitor.record_refit(record)
        self.live.swap(new_model)
        self._fitted = {q.id for q in answered}
        record["threshold"] = float(new_model.spec.threshold)
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None and hasattr(buffer, "relabel"):
            record["relabelled_transitions"] = buffer.relabel()
        record["seconds"] = time.perf_counter() - start
        self.seconds += record["seconds"]
        self.records.append(record)
        for key in ("labels_used", "false_positives_found", "missed_successes_found", "answers_used", "open_queries"):
            self.logger.record(f"refit/{key}", record[key])
        if self.verbose:
            print(f"  refit {k} at step {record['steps']}: {record['answers_used']} answers ({record['new_answers']} new, "
                  f"{record['open_queries']} still open; {record['false_positives_found']} false positives found); "
                  f"labels used {record['labels_used']} ({self.queue.used}/{self.queue.budget} queries); "
                  f"{record['seconds']:.0f}s", file=sys.stderr, flush=True)
        return record
