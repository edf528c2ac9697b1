"""The reward monitor: is the learned reward still right on the states the agent now visits?

Offline validation says little once an agent optimises a learned reward: the agent seeks states the
model calls successes that are not. :class:`SuccessMonitor` compares, on the agent's own training
frames, the model's success *decision* (a classifier's probability against its threshold, with
hold-k as configured; a progress model's progress against a threshold) with the env's true
success flag, per frame and per episode, and ranks each episode's learned return against its env
return (the only figure for preference models). :class:`RewardMonitor` feeds it from SB3's
rollouts, logs ``reward_monitor/*`` to TensorBoard and warns once when precision over a recent
window falls below a bound.

The true success flag is used here to *measure*, never to pay the agent.

>>> import numpy as np
>>> m = SuccessMonitor(window=4)
>>> m.update(predicted=np.array([True, True]), true=np.array([True, False]),
...          learned_reward=np.zeros(2), env_reward=np.zeros(2), dones=np.array([False, False]))
>>> m.figures()["precision"], m.figures()["false_positive_rate"]
(0.5, 1.0)
"""

from __future__ import annotations

import pathlib
import sys
import warnings
from collections import deque
from typing import Any, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from reward_wrappers.cores.rewards import LEARNED_REWARD, LEARNED_SUCCESS, PROGRESS, ENV_REWARD
from agents.labelling.choice import estimates
from collectors.atomic import write_json_atomic
from trainers.metrics import spearman

#: Info key of the env's true success flag (``envs.make`` writes it; SB3 logs ``is_success``).
SUCCESS_KEYS = ("success", "is_success")


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None (strict JSON), recursively.

    >>> json_safe({"a": [float("nan"), 1.0]})
    {'a': [None, 1.0]}
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


def rates(counts: dict[str, int]) -> dict[str, float]:
    """Precision, recall and false-positive rate of confusion counts (NaN where undefined)."""
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "false_positive_rate": _ratio(fp, fp + tn)}


class SuccessMonitor:
    """Confusion counts of learned vs. true success, totals and over the last ``window`` frames.

    ``predicted`` may be None (a preference model makes no success decision): then only the
    episode returns are compared. Episodes are tracked per env; an episode counts as a learned
    success when any of its frames was predicted successful, as a true success when any was.
    """

    def __init__(self, window: int = 5_000, episode_window: int = 100) -> None:
        self.window = int(window)
        self._recent: deque[tuple[bool, bool]] = deque(maxlen=self.window)
        self.totals = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        self._episodes: deque[tuple[bool, bool, float, float]] = deque(maxlen=episode_window)
        self._ep_pred: Optional[np.ndarray] = None

    def _ensure(self, n: int) -> None:
        if self._ep_pred is None or len(self._ep_pred) != n:
            self._ep_pred = np.zeros(n, bool)
            self._ep_true = np.zeros(n, bool)
            self._ep_learned = np.zeros(n)
            self._ep_env = np.zeros(n)

    def update(self, *, predicted: Optional[np.ndarray], true: np.ndarray, learned_reward: np.ndarray,
               env_reward: np.ndarray, dones: np.ndarray) -> None:
        """One vector step: per-env decision, truth, rewards and done flags (all shape ``(B,)``)."""
        true = np.asarray(true, bool).reshape(-1)
        self._ensure(len(true))
        if predicted is not None:
            predicted = np.asarray(predicted, bool).reshape(-1)
            for p, t in zip(predicted.tolist(), true.tolist()):
                self._recent.append((p, t))
                self.totals["tp" if p and t else "fp" if p else "fn" if t else "tn"] += 1
            self._ep_pred |= predicted
        self._ep_true |= true
        self._ep_learned += np.asarray(learned_reward, float).reshape(-1)
        self._ep_env += np.asarray(env_reward, float).reshape(-1)
        for i in np.flatnonzero(np.asarray(dones, bool).reshape(-1)):
            self._episodes.append((bool(self._ep_pred[i]), bool(self._ep_true[i]), float(self._ep_learned[i]),
                                   float(self._ep_env[i])))
            self._ep_pred[i] = self._ep_true[i] = False
            self._ep_learned[i] = self._ep_env[i] = 0.0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the counts and windows (episodes in progress restart with the envs)."""
        return {"totals": dict(self.totals), "recent": [list(p) for p in self._recent], "episodes": list(self._episodes)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.totals = {k: int(v) for k, v in state["totals"].items()}
        self._recent.clear()
        self._recent.extend((bool(p), bool(t)) for p, t in state["recent"])
        self._episodes.clear()
        self._episodes.extend(tuple(e) for e in state["episodes"])

    def recent_counts(self) -> dict[str, int]:
        pairs = np.array(self._recent, dtype=bool).reshape(-1, 2)
        p, t = pairs[:, 0], pairs[:, 1]
        return {"tp": int((p & t).sum()), "fp": int((p & ~t).sum()), "fn": int((~p & t).sum()), "tn": int((~p & ~t).sum())}

    def figures(self) -> dict[str, float]:
        """Figures over the recent window (frames) and the recent episodes; NaN where undefined."""
        c = self.recent_counts()
        out = {
            **rates(c),
            "frames": float(sum(c.values())),
            "predicted_positive_frames": float(c["tp"] + c["fp"]),
        }
        episodes = list(self._episodes)
        called = [truth for pred, truth, _, _ in episodes if pred]
        out["episode_precision"] = _ratio(sum(called), len(called))
        out["episodes"] = float(len(episodes))
        if len(episodes) >= 3:
            out["return_spearman"] = spearman(np.array([e[2] for e in episodes]), np.array([e[3] for e in episodes]))
        else:
            out["return_spearman"] = float("nan")
        return out

    def total_figures(self) -> dict[str, float]:
        """Precision, recall and false-positive rate over every frame seen."""
        return {**rates(self.totals), **{k: float(v) for k, v in self.totals.items()}}


def decision_from_infos(infos: list[dict[str, Any]], progress_threshold: float) -> Optional[np.ndarray]:
    """The learned success decision per env, from the reward wrappers' info keys (None if none).

    A classifier's wrapper writes ``learned_success`` (threshold and hold-k applied); a progress
    model's writes ``progress``, compared with ``progress_threshold``.
    """
    first = infos[0]
    if LEARNED_SUCCESS in first:
        return np.fromiter((bool(i[LEARNED_SUCCESS]) for i in infos), bool, len(infos))
    if PROGRESS in first:
        return np.fromiter((float(i[PROGRESS]) >= progress_threshold for i in infos), bool, len(infos))
    return None


def true_success_key(info: dict[str, Any]) -> Optional[str]:
    return next((k for k in SUCCESS_KEYS if k in info), None)


class RewardMonitor(BaseCallback):
    """Feeds a :class:`SuccessMonitor` from training rollouts; logs, warns, writes a JSON report.

    Where the env reports no true success, there is nothing to compare with: the monitor then
    reports the share of training frames the reward calls successes and, given the run's
    ``label_queue``, the precision *estimated* from the answered queries (a person's answers on a
    uniform sample of the frames the reward called successes), and says so. ``labels_used`` is
    read from ``label_counter`` (anything with a ``used`` attribute: the run's label account)
    so the report says how many labels the figures cost.
    """

    def __init__(self, *, min_precision: float = 0.9, window: int = 5_000, min_positives: int = 50,
                 progress_threshold: float = 0.9, log_every: int = 1_000,
                 report_path: Optional[str | pathlib.Path] = None, label_counter: Any = None, label_queue: Any = None,
                 verbose: int = 1) -> None:
        super().__init__(verbose)
        self.monitor = SuccessMonitor(window)
        self.min_precision = float(min_precision)
        self.min_positives = int(min_positives)
        self.progress_threshold = float(progress_threshold)
        self.log_every = int(log_every)
        self.report_path = None if report_path is None else pathlib.Path(report_path)
        self.label_counter = label_counter
        self.label_queue = label_queue
        self.enabled: Optional[bool] = None  # decided at the first step: does the env report success?
        self.frames_decided = 0  # training frames with a learned success decision
        self.frames_called = 0  # of those, called successes
        self.warned = False
        self.history: list[dict[str, float]] = []
        self.refits: list[dict[str, Any]] = []
        self._next_log = 0

    @property
    def labels_used(self) -> int:
        return int(getattr(self.label_counter, "used", 0))

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        if self.enabled is None:
            key = true_success_key(infos[0])
            self.enabled = key is not None
            self._key = key
            if not self.enabled and self.verbose:
                print("reward monitor: the env reports no success flag, so true precision cannot be measured; "
                      "reporting the share of frames the reward calls successes"
                      + (" and the precision estimated from the answered queries" if self.label_queue else ""),
                      file=sys.stderr)
        decision = decision_from_infos(infos, self.progress_threshold)
        if decision is not None:
            self.frames_decided += len(decision)
            self.frames_called += int(decision.sum())
        if not self.enabled:
            return True
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64).reshape(-1)
        self.monitor.update(
            predicted=decision,
            true=np.fromiter((bool(i.get(self._key, False)) for i in infos), bool, len(infos)),
            learned_reward=np.fromiter((float(i.get(LEARNED_REWARD, r)) for i, r in zip(infos, rewards)), float, len(infos)),
            env_reward=np.fromiter((float(i.get(ENV_REWARD, r)) for i, r in zip(infos, rewards)), float, len(infos)),
            dones=np.asarray(self.locals["dones"], bool),
        )
        if self.num_timesteps >= self._next_log:
            self._next_log = self.num_timesteps + self.log_every
            self._log()
        return True

    def snapshot(self) -> dict[str, float]:
        totals = {f"{k}_total": v for k, v in self.monitor.totals.items()}
        return {"steps": int(self.num_timesteps), "labels_used": self.labels_used, **self.monitor.figures(), **totals}

    def _log(self) -> None:
        point = self.snapshot()
        self.history.append(point)
        for key in ("precision", "recall", "false_positive_rate", "episode_precision", "return_spearman", "labels_used"):
            if not np.isnan(point[key]):
                self.logger.record(f"reward_monitor/{key}", point[key])
        if (not self.warned and point["predicted_positive_frames"] >= self.min_positives
                and point["precision"] < self.min_precision):
            self.warned = True
            message = (
                f"reward monitor: the learned reward's success precision is {point['precision']:.2f} over the last "
                f"{int(point['frames'])} training frames (below --monitor-min-precision {self.min_precision}): the agent "
                "is being paid for states the env does not call successes. Correct the model where the agent fools "
                "it (--refit-every N --label-budget L) or add demonstrations (--demos DIR)")
            warnings.warn(message, RuntimeWarning, stacklevel=1)

    #: the attributes a checkpoint keeps besides the monitor's counts
    _STATE = ("enabled", "frames_decided", "frames_called", "warned", "history", "refits", "_next_log")

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``agents.checkpoint``)."""
        return {"monitor": self.monitor.state(), "key": getattr(self, "_key", None),
                **{name: getattr(self, name) for name in self._STATE}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.monitor.load_state(state["monitor"])
        self._key = state["key"]
        for name in self._STATE:
            setattr(self, name, state[name])

    def record_refit(self, info: dict[str, Any]) -> None:
        """Called by the refit just before it swaps the model: the figures the old model earned."""
        self.refits.append({**info, "before": self.snapshot()})

    def estimates(self) -> dict[str, Any]:
        """Figures that need no success flag: the share of frames called successes, and the
        precision estimated from answered queries (None without a queue or answers)."""
        rate = _ratio(self.frames_called, self.frames_decided)
        out: dict[str, Any] = {"called_success_rate": rate}
        if self.label_queue is not None:
            figures = estimates(self.label_queue.answered(), 0.0 if np.isnan(rate) else rate)
            out.update(precision_estimate=figures["precision"], uniform_answers_on_called=figures["uniform_answers_called"])
        return out

    def page_figures(self) -> dict[str, Any]:
        """The few figures the labelling page shows."""
        figures: dict[str, Any] = {"all_labels_(marks_+_queries)": self.labels_used, **self.estimates()}
        if self.enabled:
            recent = self.monitor.figures()
            figures.update(true_precision=recent["precision"], true_recall=recent["recall"])
        return json_safe(figures)

    def _on_training_end(self) -> None:
        if self.enabled:
            self._log()
        self.write()

    def report(self) -> dict[str, Any]:
        """Everything ``reward_monitor.json`` holds (strict JSON: undefined figures are null)."""
        return json_safe({
            "enabled": bool(self.enabled),
            "true_success_reported": bool(self.enabled),
            "estimates": {**self.estimates(), "note": "called_success_rate: share of training frames the reward called "
                          "successes; precision_estimate: share of the uniformly drawn answered queries on such frames "
                          "that the labeller called successes: an estimate, not the env's truth"},
            "labels": self.label_counter.summary() if hasattr(self.label_counter, "summary") else None,
            "min_precision": self.min_precision,
            "window_frames": self.monitor.window,
            "warned": self.warned,
            "labels_used": self.labels_used,
            "final": self.snapshot() if self.enabled else None,
            "totals": self.monitor.total_figures() if self.enabled else None,
            "refits": self.refits,
            "history": self.history,
        })

    def write(self) -> None:
        if self.report_path is not None:
            write_json_atomic(self.report_path, self.report())


def precision_since(history: list[dict[str, Any]], start_step: int) -> Optional[float]:
    """Precision of the learned success decision over the frames after ``start_step``, from the
    cumulative counts of a monitor history (None when nothing was called a success since).

    >>> h = [{"steps": 0, "tp_total": 0, "fp_total": 0}, {"steps": 80, "tp_total": 1, "fp_total": 9},
    ...      {"steps": 100, "tp_total": 20, "fp_total": 10}]
    >>> precision_since(h, 80)
    0.95
    """
    if not history:
        return None
    before = [p for p in history if p["steps"] <= start_step]
    tp0, fp0 = (before[-1]["tp_total"], before[-1]["fp_total"]) if before else (0, 0)
    tp, fp = history[-1]["tp_total"] - tp0, history[-1]["fp_total"] - fp0
    return tp / (tp + fp) if tp + fp else None
