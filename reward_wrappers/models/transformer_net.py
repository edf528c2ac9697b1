"""A small causal transformer over a window of frame features (+ an optional task-text token).

:class:`RewardTransformer` is a :class:`~reward_wrappers.models.frame_nets.VideoRewardNet`: each frame of
the window is encoded by the per-key encoders (for frozen embeddings, an embedding key such as
``rgb_emb`` written by ``rewardswap embed``, that is a normalising MLP that adapts any embedding
width to ``feature_dim``), projected to ``d_model`` tokens with a learned position per window
slot, and run through a causal transformer encoder (a token attends to itself, the earlier
frames and the text token). The last token's output is the feature vector the progress model's
heads read (:class:`~reward_wrappers.models.progress_networks.ProgressNet` with ``trunk="transformer"``:
ReWiND progress, or SARM stages with ``stages=``).

The task text enters as one token: a vector the user supplies (e.g. a MiniLM or CLIP text
embedding of the instruction), stored in the network (so in the checkpoint) and projected like
the frames. Without it the model runs on the frames alone.

>>> import torch
>>> from reward_wrappers.models.base import InputSpec, ModelSpec
>>> spec = ModelSpec({"rgb_emb": InputSpec((32,), "float16")}, window=4, sampling="uniform", output="progress")
>>> net = RewardTransformer(spec, hidden=16, feature_dim=16, d_model=16, text=[0.1] * 8)
>>> net({"rgb_emb": torch.zeros(3, 4, 32, dtype=torch.float16)}).shape
torch.Size([3, 16])
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from reward_wrappers.models.base import ModelSpec
from reward_wrappers.models.frame_nets import VideoRewardNet
from reward_wrappers.models.registry import register_architecture


class RewardTransformer(VideoRewardNet):
    """Frames (and the text token) -> causal transformer -> ``(B, n_outputs)`` from the last token."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        encoder: str = "cnn",
        hidden: int = 256,
        feature_dim: int = 128,
        cnn_width: int = 32,
        n_outputs: Optional[int] = None,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        text: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__(spec, encoder=encoder, hidden=hidden, feature_dim=feature_dim, cnn_width=cnn_width)
        self.frame_proj = nn.Linear(self.feature_dim, d_model)
        self.position = nn.Parameter(torch.zeros(self.window, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.has_text = text is not None
        if self.has_text:
            # Stored as a buffer: the task is part of what the checkpoint means.
            self.register_buffer("text", torch.as_tensor(list(text), dtype=torch.float32))
            self.text_proj = nn.Linear(len(self.text), d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, hidden if n_outputs is None else n_outputs)
        tokens = self.window + int(self.has_text)
        # True = may not attend: a frame never sees a later frame; the text token (first) sees only itself.
        self.register_buffer("mask", torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1), persistent=False)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.frame_proj(features) + self.position
        if self.has_text:
            text = self.text_proj(self.text).expand(tokens.shape[0], 1, -1)
            tokens = torch.cat([text, tokens], dim=1)
        h = self.encoder(tokens, mask=self.mask)
        return self.out(self.norm(h[:, -1]))

    def numpy_forward(self) -> None:
        """No numpy copy: the wrappers call the torch forward."""
        return None


register_architecture("reward_transformer", RewardTransformer)
