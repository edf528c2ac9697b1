"""trainers.metrics against their textbook definitions, computed independently here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainers.metrics import best_f1_threshold, binary_metrics, roc_auc, spearman


def pairwise_auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.integers(0, 2, 40)
    assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))


def test_auc_is_nan_with_one_class():
    assert np.isnan(roc_auc(np.arange(3.0), np.ones(3)))


def test_spearman_known_values():
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    # d = [0, 0, -1, 1]: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([1, 2, 4, 3.0])) == pytest.approx(0.8)


def test_binary_metrics_counts():
    m = binary_metrics(np.array([0.9, 0.8, 0.2, 0.6]), np.array([1, 0, 1, 0]), 0.5)
    assert (m["true_positives"], m["false_positives"], m["false_negatives"], m["true_negatives"]) == (1, 2, 1, 0)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(0.5)


def test_best_threshold_separates_a_separable_set():
    probs = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    t = best_f1_threshold(probs, labels)
    assert 0.3 < t < 0.7
