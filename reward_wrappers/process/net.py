"""``process_net``: the fitted parts of a process reward (seed 004, Robo-Dopamine style).

One network holds everything a checkpoint needs to rebuild the process reward:

* the feature layout (the spec's input keys, flattened and concatenated in sorted key order) and
  its normalisation (training mean and standard deviation);
* the **hop predictor**: from (before, after) features, a hop in [-1, 1] (positive = progress)
  and its uncertainty (the standard deviation of a Gaussian fitted by likelihood). Two forms:
  ``"pairwise"`` (one network of the pair) and ``"anchored"``: a per-frame progress difference
  ``g(after) - g(before)`` plus the antisymmetric part of the pair network, so a hop from a frame
  to itself is exactly 0 and reversing a pair negates its hop. A pair network alone only knows
  pairs of demonstration frames; the per-frame term carries an ordering to frames no
  demonstration visited (measured in ``benchmarks/potential_quality.py``);
* the **novelty** reference: features and one-step changes of training frames, against which
  a frame's mean distance to its nearest neighbours measures how unfamiliar it is;
* the **fusion network**: from the three perspectives and their uncertainties, weight logits
  over the perspectives and a confidence logit.

It reads state or embedding keys (features), never pixels. The per-episode arithmetic (the
perspectives, fusion overrides, gating) lives in :mod:`reward_wrappers.process.potential`;
calling the network like another reward model is refused, since a process potential needs an
episode's history and a goal.

>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> net = ProcessNet(ModelSpec({"state": InputSpec((3,), "float32")}, output="progress"), hidden=8)
>>> mu, sigma = net.hop(torch.zeros(2, 3), torch.ones(2, 3))
>>> tuple(mu.shape), bool((mu.abs() <= 1).all()), bool((sigma > 0).all())
((2,), True, True)
>>> anchored = ProcessNet(ModelSpec({"state": InputSpec((3,), "float32")}, output="progress"), hidden=8,
...                       hop_form="anchored")
>>> x, y = torch.randn(4, 3), torch.randn(4, 3)
>>> bool((anchored.hop(x, x)[0] == 0).all()), bool(torch.allclose(anchored.hop(x, y)[0], -anchored.hop(y, x)[0]))
(True, True)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.registry import register_architecture

#: Columns of the fusion network's input, in order (see :func:`fusion_inputs`).
FUSION_INPUTS = ("phi_I", "phi_F", "phi_B", "sigma_I", "sigma_F", "sigma_B", "gap_IF", "gap_IB", "gap_FB", "novelty")


def feature_dim(spec: ModelSpec) -> int:
    """Length of the concatenated feature vector of ``spec``'s inputs."""
    return sum(int(math.prod(s.shape)) for s in spec.inputs.values())


def raw_features(spec: ModelSpec, frames: Mapping[str, Any]) -> np.ndarray:
    """``(B, F)`` float64: the spec's input keys of ``frames`` flattened and joined in sorted key
    order (the layout the checkpoint was fitted on)."""
    parts = []
    for key in sorted(spec.inputs):
        value = frames[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        parts.append(value.reshape(value.shape[0], -1).astype(np.float64, copy=False))
    return np.concatenate(parts, axis=1)


def fusion_inputs(phis: np.ndarray, sigmas: np.ndarray, novelty: np.ndarray) -> np.ndarray:
    """``(B, 10)`` fusion-network input: perspectives, their uncertainties, pairwise gaps, and
    ``log(1 + novelty)`` (unbounded distances squashed so far-off frames do not saturate the net)."""
    gaps = np.abs(phis[:, [0, 0, 1]] - phis[:, [1, 2, 2]])
    return np.concatenate([phis, sigmas, gaps, np.log1p(novelty)[:, None]], axis=1)


#: the hop predictor's forms (see the module docstring)
HOP_FORMS = ("pairwise", "anchored")


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class ProcessNet(nn.Module):
    """Hop predictor, novelty reference and fusion network of one process reward (see module doc).

    Args:
        spec: the inputs (state or embedding keys) whose flattened values form the features.
        hidden: width of the hop predictor.
        fusion_hidden: width of the fusion network.
        reference_rows: rows of the novelty reference (training frames: features and changes).
        neighbours: nearest reference rows averaged for novelty.
        hop_form: ``"pairwise"`` or ``"anchored"`` (see the module docstring). The default stays
            ``"pairwise"`` so that checkpoints written before the choice existed load as fitted.
    """

    def __init__(self, spec: ModelSpec, hidden: int = 128, fusion_hidden: int = 32, reference_rows: int = 1,
                 neighbours: int = 5, hop_form: str = "pairwise") -> None:
        super().__init__()
        check_process_spec(spec)
        if hop_form not in HOP_FORMS:
            raise ValueError(f"hop_form must be one of {HOP_FORMS}, got {hop_form!r}")
        self.hop_form = hop_form
        dim = feature_dim(spec)
        self.dim, self.neighbours = dim, int(neighbours)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("reference", torch.zeros(int(reference_rows), 2 * dim))
        self.register_buffer("novelty_scale", torch.ones(()))
        self.hop_net = _mlp(3 * dim, hidden, 2)
        # Per-frame progress of the anchored form (absent from pairwise checkpoints' state dicts).
        self.anchor = _mlp(dim, hidden, 1) if hop_form == "anchored" else None
        self.fusion = _mlp(len(FUSION_INPUTS), fusion_hidden, len(FUSION_INPUTS[:3]) + 1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError("a process reward model keeps per-episode state and needs a goal: use it through "
                        "reward_wrappers.ProcessPotential (as a PBRS potential) or its score_episode()")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def hop(self, before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hop ``(B,)`` in [-1, 1] and its uncertainty ``(B,)`` (> 0) between normalised features."""
        if self.anchor is None:
            out = self.hop_net(torch.cat([before, after, after - before], dim=1))
        else:
            # One call per network for both directions: at the few rows of a PPO step, a call's cost
            # is mostly fixed, not per row.
            n = len(before)
            both = self.hop_net(torch.cat([torch.cat([before, after, after - before], dim=1),
                                           torch.cat([after, before, before - after], dim=1)]))
            out, back = both[:n], both[n:]
            anchors = self.anchor(torch.cat([after, before]))[:, 0]
            mean = anchors[:n] - anchors[n:] + 0.5 * (out[:, 0] - back[:, 0])
            out = torch.stack([mean, 0.5 * (out[:, 1] + back[:, 1])], dim=1)
        return torch.tanh(out[:, 0]), nn.functional.softplus(out[:, 1]) + 1e-3

    def hop_modules(self) -> nn.Module:
        """The hop predictor's parameters (what its fit trains)."""
        return nn.ModuleList([m for m in (self.hop_net, self.anchor) if m is not None])

    def novelty(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """Mean distance of ``(x, change)`` rows to their nearest reference rows, in units of the
        training frames' own (1 = as familiar as a typical held-out training frame)."""
        distances = torch.cdist(torch.cat([x, change], dim=1), self.reference)
        k = min(self.neighbours, self.reference.shape[0])
        return distances.topk(k, dim=1, largest=False).values.mean(dim=1) / self.novelty_scale


def check_process_spec(spec: ModelSpec) -> None:
    """Features are numbers, not pixels: refuse image inputs with what to do instead."""
    images = [k for k, s in spec.inputs.items() if s.dtype == "uint8" and len(s.shape) == 3]
    if images:
        raise ValueError(f"a process reward reads features, not pixels: {images} are images; embed them first "
                         "(`rewardswap embed`) and pass the *_emb keys, or pass state keys")


register_architecture("process_net", ProcessNet)

__all__ = ["FUSION_INPUTS", "HOP_FORMS", "ProcessNet", "check_process_spec", "feature_dim", "fusion_inputs", "raw_features"]
