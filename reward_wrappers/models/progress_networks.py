"""Progress networks: ReWiND-style progress in [0, 1], SARM-style stages, ensemble confidence.

:class:`ProgressNet` reuses :class:`~reward_wrappers.models.networks.RewardNet` as its trunk (same
per-key encoders, same causal window layout, same saved normalisation) and puts ``ensemble``
small heads on top. Each head predicts

* ``n_stages == 1`` (ReWiND): one progress value ``sigmoid(z)`` in ``[0, 1]``;
* ``n_stages == K > 1`` (SARM): ``K`` stage logits and ``K`` within-stage progress values
  ``tau_k = sigmoid(z_k)``; progress is ``P_{k^-1} + a_{k^} * tau_{k^}`` with
  ``k^ = argmax`` of the stage logits, ``a`` the stage priors (mean fraction of a demo spent in
  each stage, fitted on the training demos and saved with the weights) and ``P_{k-1}`` their
  cumulative sum before stage ``k`` (``P_{-1} = 0``).

``forward(batch)`` returns ``(B, 2 + K')`` columns: ``0`` the progress (mean over heads; what
``TorchRewardModel.predict`` returns), ``1`` the confidence ``1 - 2 * std`` over heads, clipped
to ``[0, 1]`` (``1.0`` with a single head, since there is no spread to measure), then, for stage
models only, the ``K`` stage probabilities averaged over heads. Progress lies in ``[0, 1]`` so its
standard deviation is at most ``0.5``: confidence 0 means the heads disagree maximally.

>>> import numpy as np
>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> spec = ModelSpec(inputs={"state": InputSpec((3,), "float32")}, window=2, output="progress")
>>> net = ProgressNet(spec, hidden=16, stage_priors=[0.25, 0.75], ensemble=3)
>>> out = net({"state": torch.zeros(4, 2, 3)})
>>> out.shape, bool(((out[:, 0] >= 0) & (out[:, 0] <= 1)).all())
(torch.Size([4, 4]), True)
>>> net.cumulative_priors.tolist()
[0.0, 0.25]
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from reward_wrappers.models.base import Batch, ModelSpec
from reward_wrappers.models.registry import register_architecture
from reward_wrappers.models.encoders import numpy_layers, numpy_sigmoid, run_numpy_layers
from reward_wrappers.models.networks import NumpyForward, RewardNet, TensorBatch
from reward_wrappers.models.transformer_net import RewardTransformer


class ProgressNet(nn.Module):
    """Trunk (:class:`RewardNet`) + ``ensemble`` heads predicting progress or stage + tau."""

    #: Column of ``forward``'s output holding the confidence (read by ``TorchRewardModel``).
    CONFIDENCE_COLUMN = 1

    def __init__(
        self,
        spec: ModelSpec,
        *,
        encoder: str = "cnn",
        hidden: int = 256,
        feature_dim: int = 128,
        cnn_width: int = 32,
        head_hidden: int = 64,
        stage_priors: Sequence[float] | None = None,
        ensemble: int = 1,
        trunk: str = "mlp",
        transformer: dict | None = None,
    ) -> None:
        super().__init__()
        if ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {ensemble}")
        priors = [1.0] if stage_priors is None else [float(p) for p in stage_priors]
        if not priors or any(p < 0 for p in priors) or abs(sum(priors) - 1.0) > 1e-4:
            raise ValueError(f"stage_priors must be non-negative and sum to 1, got {priors}")
        self.n_stages = len(priors)
        self.ensemble = ensemble
        # The trunk's output is a feature vector here, not a score: an MLP over the concatenated
        # frames, or a causal transformer over them (reward_wrappers.models.transformer_net).
        if trunk == "mlp":
            self.trunk = RewardNet(spec, encoder=encoder, hidden=hidden, feature_dim=feature_dim, n_outputs=hidden, cnn_width=cnn_width)
        elif trunk == "transformer":
            self.trunk = RewardTransformer(spec, encoder=encoder, hidden=hidden, feature_dim=feature_dim, cnn_width=cnn_width,
                                           n_outputs=hidden, **(transformer or {}))
        else:
            raise ValueError(f"trunk must be 'mlp' or 'transformer', got {trunk!r}")
        self.register_buffer("stage_priors", torch.tensor(priors, dtype=torch.float32))
        self.register_buffer("cumulative_priors", torch.tensor(np.r_[0.0, np.cumsum(priors)[:-1]], dtype=torch.float32))
        per_head = 1 if self.n_stages == 1 else 2 * self.n_stages
        self.heads = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Linear(hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, per_head))
            for _ in range(ensemble)
        )

    # ------------------------------------------------------------------ training-time views
    def head_outputs(self, batch: TensorBatch) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Raw per-head outputs: ``(stage_logits (E, B, K) or None, tau_logits (E, B, K))``.

        For ``n_stages == 1`` the tau logits are the progress logits (``K = 1``).
        """
        features = self.trunk(batch)
        raw = torch.stack([head(features) for head in self.heads])  # (E, B, per_head)
        if self.n_stages == 1:
            return None, raw
        return raw[..., : self.n_stages], raw[..., self.n_stages :]

    def progress_per_head(self, stage_logits: torch.Tensor | None, tau_logits: torch.Tensor) -> torch.Tensor:
        """Progress ``(E, B)`` from head outputs, with the run-time SARM formula."""
        tau = torch.sigmoid(tau_logits)
        if stage_logits is None:
            return tau[..., 0]
        stage = stage_logits.argmax(dim=-1, keepdim=True)  # (E, B, 1)
        tau_of_stage = tau.gather(-1, stage).squeeze(-1)
        return self.cumulative_priors[stage.squeeze(-1)] + self.stage_priors[stage.squeeze(-1)] * tau_of_stage

    # ------------------------------------------------------------------ inference
    def forward(self, batch: TensorBatch) -> torch.Tensor:
        stage_logits, tau_logits = self.head_outputs(batch)
        progress = self.progress_per_head(stage_logits, tau_logits)  # (E, B)
        mean = progress.mean(dim=0)
        if self.ensemble > 1:
            confidence = (1.0 - 2.0 * progress.std(dim=0, unbiased=False)).clamp(0.0, 1.0)
        else:
            confidence = torch.ones_like(mean)
        columns = [mean[:, None], confidence[:, None]]
        if stage_logits is not None:
            columns.append(F.softmax(stage_logits, dim=-1).mean(dim=0))
        return torch.cat(columns, dim=1)

    def numpy_forward(self) -> Optional[NumpyForward]:
        """A float32 numpy copy of :meth:`forward` (every column); ``None`` unless the trunk has
        one (state inputs only) and every head is Linear/ReLU only."""
        trunk = self.trunk.numpy_forward()
        heads = [numpy_layers(head) for head in self.heads]
        if trunk is None or any(h is None for h in heads):
            return None
        n_stages, ensemble = self.n_stages, self.ensemble
        priors = self.stage_priors.detach().cpu().numpy().astype(np.float32)
        cumulative = self.cumulative_priors.detach().cpu().numpy().astype(np.float32)

        def forward(batch: Batch) -> np.ndarray:
            features = trunk(batch)
            raw = np.stack([run_numpy_layers(h, features) for h in heads])  # type: ignore[arg-type]  # (E, B, per_head)
            if n_stages == 1:
                progress = numpy_sigmoid(raw[..., 0])
                stage_logits = None
            else:
                stage_logits, tau = raw[..., :n_stages], numpy_sigmoid(raw[..., n_stages:])
                stage = stage_logits.argmax(axis=-1)  # (E, B)
                tau_of_stage = np.take_along_axis(tau, stage[..., None], axis=-1)[..., 0]
                progress = cumulative[stage] + priors[stage] * tau_of_stage
            mean = progress.mean(axis=0)
            if ensemble > 1:
                confidence = np.clip(1.0 - 2.0 * progress.std(axis=0), 0.0, 1.0)
            else:
                confidence = np.ones_like(mean)
            columns = [mean[:, None], confidence[:, None]]
            if stage_logits is not None:
                shifted = np.exp(stage_logits - stage_logits.max(axis=-1, keepdims=True))
                columns.append((shifted / shifted.sum(axis=-1, keepdims=True)).mean(axis=0))
            return np.concatenate(columns, axis=1).astype(np.float32, copy=False)

        return forward

    def set_state_normalization(self, key: str, mean: np.ndarray, std: np.ndarray) -> None:
        self.trunk.set_state_normalization(key, mean, std)


register_architecture("progress_net", ProgressNet)
