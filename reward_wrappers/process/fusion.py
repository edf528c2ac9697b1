"""Fusing three progress perspectives into one potential with a confidence (the process reward's
last stage), and the heuristic hop and fusion that need no network. numpy only: no torch here.

A process reward (:mod:`reward_wrappers.process.potential`) reads, at every frame, three
estimates of task progress in [0, 1], in :data:`PERSPECTIVES` order:

* ``I``, incremental: the clipped running sum of the hops between consecutive frames;
* ``F``, forward: the hop from the episode's first frame to this one;
* ``B``, backward: one minus the hop from this frame to the goal.

A fusion network (or :func:`heuristic_fusion`) gives three weight logits and a confidence logit
per frame; :func:`fuse` turns them into the fused potential under a :class:`FusionOverride`,
the knobs an orchestrator turns without refitting anything.

>>> import numpy as np
>>> phis = np.array([[0.2, 0.4, 0.9]])
>>> out = fuse(np.zeros((1, 3)), np.array([4.0]), phis, FusionOverride(candidate_mask=(False, True, True)))
>>> out.weights.round(3).tolist(), round(float(out.phi_star[0]), 3)
([[0.0, 0.5, 0.5]], 0.65)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

#: Perspective names, in column order: incremental, forward, backward.
PERSPECTIVES: tuple[str, str, str] = ("I", "F", "B")
#: How gating uses the confidence: scale the potential by it, only zero it below the risk
#: tolerance, or neither.
GATING_MODES = ("scale", "threshold", "none")
#: What a gate of 0 leaves: a potential of 0, or the episode's first fused value.
GATE_TOWARD = ("zero", "start")


@dataclass(frozen=True)
class FusionOverride:
    """Run-time controls of the fusion (no refit needed).

    Attributes:
        temperature: softmax temperature of the weights (lower: sharper).
        candidate_mask: which perspectives (I, F, B) may carry weight.
        risk_tolerance: minimum confidence; below it the potential is 0.
        entropy_penalty: confidence is multiplied by ``1 - entropy_penalty * H(w) / log(k)``, so an
            undecided fusion (weights spread over k perspectives) is trusted less.
        weight_smoothing: ``w_t = s * w_{t-1} + (1 - s) * w_raw``, restarted every episode.
        min_weight_floor: every enabled perspective keeps at least this weight.
        gating: ``"scale"`` (potential times confidence), ``"threshold"`` or ``"none"``.
        gate_toward: where a gate below 1 pulls the potential: ``"zero"``, or ``"start"`` (the
            episode's first ``Phi*``: ``Phi = Phi*_0 + gate * (Phi* - Phi*_0)``). With ``gamma < 1``
            each step in a state costs ``(1 - gamma) * Phi``, so zeroing unfamiliar states makes
            them cheap places to wait; pulling toward the start makes them neutral.

    Gating multiplies the *potential* (a function of the history-augmented state), never the
    shaping reward, so ``sum_t gamma^t F_t`` still telescopes and the optimal policy is unchanged.
    """

    temperature: float = 1.0
    candidate_mask: tuple[bool, bool, bool] = (True, True, True)
    risk_tolerance: float = 0.3
    entropy_penalty: float = 0.1
    weight_smoothing: float = 0.0
    min_weight_floor: float = 0.01
    gating: str = "scale"
    gate_toward: str = "zero"

    def __post_init__(self) -> None:
        mask = tuple(bool(m) for m in self.candidate_mask)
        object.__setattr__(self, "candidate_mask", mask)
        if len(mask) != len(PERSPECTIVES) or not any(mask):
            raise ValueError(f"candidate_mask needs {len(PERSPECTIVES)} flags (I, F, B) with at least one True, got {mask}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        for name in ("risk_tolerance", "entropy_penalty", "weight_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.min_weight_floor * sum(mask) < 1.0:
            raise ValueError(f"min_weight_floor * enabled perspectives must be in [0, 1), got {self.min_weight_floor} x {sum(mask)}")
        if self.gating not in GATING_MODES:
            raise ValueError(f"gating must be one of {GATING_MODES}, got {self.gating!r}")
        if self.gate_toward not in GATE_TOWARD:
            raise ValueError(f"gate_toward must be one of {GATE_TOWARD}, got {self.gate_toward!r}")


@dataclass
class Fused:
    """One fusion step for B rows: weights ``(B, 3)``; the rest ``(B,)``.

    ``phi_star`` is the fused progress, ``potential`` what shaping uses (``phi_star`` gated by
    ``gate``), ``disagreement`` the largest gap between two enabled perspectives.
    """

    weights: np.ndarray
    phi_star: np.ndarray
    confidence: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray
    gate: np.ndarray
    potential: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fusion_weights(logits: np.ndarray, override: FusionOverride, previous: Optional[np.ndarray] = None) -> np.ndarray:
    """Softmax of ``logits / temperature`` over the enabled perspectives, floored, then smoothed
    with ``previous`` (rows of NaN mean no previous weights: an episode's first frame)."""
    mask = np.asarray(override.candidate_mask)
    z = np.where(mask, np.asarray(logits, dtype=np.float64) / override.temperature, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    w = np.exp(z)
    w /= w.sum(axis=1, keepdims=True)
    k = int(mask.sum())
    w = np.where(mask, override.min_weight_floor + (1.0 - k * override.min_weight_floor) * w, 0.0)
    if previous is not None and override.weight_smoothing > 0:
        s = override.weight_smoothing
        w = np.where(np.isnan(previous[:, :1]), w, s * np.nan_to_num(previous) + (1.0 - s) * w)
    return w


def fuse(weight_logits: np.ndarray, confidence_logit: np.ndarray, phis: np.ndarray, override: FusionOverride,
         previous_weights: Optional[np.ndarray] = None, start: Optional[np.ndarray] = None) -> Fused:
    """The fused potential of perspectives ``phis`` ``(B, 3)`` from a fusion's logits; ``start``
    is each row's episode-first ``Phi*`` for ``gate_toward="start"`` (NaN: this is the first frame)."""
    mask = np.asarray(override.candidate_mask)
    w = fusion_weights(weight_logits, override, previous_weights)
    phi_star = (w * phis).sum(axis=1)
    k = int(mask.sum())
    entropy = -(np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)).sum(axis=1)
    spread = entropy / math.log(k) if k > 1 else np.zeros_like(entropy)
    confidence = np.clip(_sigmoid(np.asarray(confidence_logit, dtype=np.float64)) * (1.0 - override.entropy_penalty * spread), 0.0, 1.0)
    enabled = phis[:, mask]
    disagreement = enabled.max(axis=1) - enabled.min(axis=1)
    gate = confidence if override.gating == "scale" else np.ones_like(confidence)
    if override.gating != "none":
        gate = np.where(confidence >= override.risk_tolerance, gate, 0.0)
    base = np.zeros_like(phi_star)
    if override.gate_toward == "start":
        base = phi_star if start is None else np.where(np.isnan(start), phi_star, start)
    return Fused(w, phi_star, confidence, entropy, disagreement, gate, base + gate * (phi_star - base))


# --------------------------------------------------------------------------------------------
# heuristics: no network, no torch
# --------------------------------------------------------------------------------------------
def heuristic_hop(before: np.ndarray, after: np.ndarray, goal: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hop = how much closer to ``goal`` ``after`` is than ``before``, in units of ``scale`` (the
    episode's first distance to the goal), clipped to [-1, 1]; uncertainty 0 (none estimated).

    >>> goal, scale = np.zeros((1, 2)), np.array([2.0])
    >>> heuristic_hop(np.array([[2.0, 0.0]]), np.array([[1.0, 0.0]]), goal, scale)[0].tolist()
    [0.5]
    """
    d_before = np.linalg.norm(before - goal, axis=1)
    d_after = np.linalg.norm(after - goal, axis=1)
    hop = np.clip((d_before - d_after) / np.maximum(scale, 1e-8), -1.0, 1.0)
    return hop, np.zeros_like(hop)


def heuristic_fusion(phis: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight logits and a confidence logit without a network: each perspective weighted by how
    close it is to the other two (the odd one out gets least), confidence falling with their
    disagreement (0.5 at a gap of 0.25) and with the hop uncertainty.

    >>> logits, conf = heuristic_fusion(np.array([[0.5, 0.5, 0.6]]), np.zeros((1, 3)))
    >>> bool(logits[0, 2] < logits[0, 0]), bool(conf[0] > 0)
    (True, True)
    """
    gaps = np.abs(phis[:, :, None] - phis[:, None, :]).sum(axis=2)  # (B, 3): distance to the others
    logits = -4.0 * gaps - np.log1p(np.maximum(sigmas, 0.0))
    disagreement = phis.max(axis=1) - phis.min(axis=1)
    confidence_logit = 4.0 * (0.25 - disagreement) / 0.25 - sigmas.mean(axis=1)
    return logits, confidence_logit


__all__ = ["FusionOverride", "Fused", "GATE_TOWARD", "GATING_MODES", "PERSPECTIVES", "fuse", "fusion_weights", "heuristic_fusion",
           "heuristic_hop"]
