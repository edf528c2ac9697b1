"""Metrics computed on held-out data: ranking (AUC, Spearman) and thresholded classification.

All functions take plain numpy arrays; ranking metrics come from scipy (ties get average ranks).

>>> import numpy as np
>>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
0.75
>>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]))
1.0
>>> best_f1_threshold(np.array([0.0, 0.0, 1.0]), np.array([0, 0, 1]))
0.5
"""

from __future__ import annotations

import numpy as np
import scipy.stats


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U over the two classes); NaN if one class is absent."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float(scipy.stats.mannwhitneyu(scores[labels], scores[~labels]).statistic / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant (no warning)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a, b).statistic)


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of ``probs > threshold`` against ``labels``."""
    pred = np.asarray(probs).reshape(-1) > threshold
    truth = np.asarray(labels).reshape(-1) > 0.5
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    tn = int((~pred & ~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(pred), 1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The probability threshold maximising F1 on held-out data (ties: the higher threshold).

    A higher threshold trades recall for precision, which is the safer side for RL: agents
    exploit false positives.
    """
    values = np.unique(np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0))
    if len(values) > 513:
        values = np.unique(np.quantile(values, np.linspace(0, 1, 513)))
    # Midpoints between consecutive scores: the threshold sits in the gap it separates.
    candidates = 0.5 * (values[1:] + values[:-1]) if len(values) > 1 else np.array([0.5])
    best, best_f1 = 0.5, -1.0
    for t in candidates:
        f1 = binary_metrics(probs, labels, float(t))["f1"]
        if f1 >= best_f1:
            best, best_f1 = float(t), f1
    return best


def precision_threshold(probs: np.ndarray, labels: np.ndarray, precision: float) -> float | None:
    """The lowest probability threshold at which held-out precision reaches ``precision`` (the
    most recall that precision allows), or None when no threshold with a positive call reaches it.

    >>> round(precision_threshold(np.array([0.2, 0.6, 0.7, 0.9]), np.array([0, 0, 1, 1]), 0.9), 3)
    0.65
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    truth = np.asarray(labels).reshape(-1) > 0.5
    order = np.argsort(-probs, kind="stable")
    sorted_probs, hits = probs[order], np.cumsum(truth[order])
    called = np.arange(1, len(probs) + 1)
    # Only cut between distinct scores: a threshold cannot split tied frames.
    last_of_tie = np.r_[sorted_probs[1:] != sorted_probs[:-1], True]
    ok = np.flatnonzero((hits / called >= precision) & last_of_tie)
    if len(ok) == 0:
        return None
    k = ok[-1]
    below = sorted_probs[k + 1] if k + 1 < len(sorted_probs) else max(sorted_probs[k] - 1e-6, 0.0)
    return float(0.5 * (sorted_probs[k] + below))
