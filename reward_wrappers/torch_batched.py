"""Torch-native twins of the reward wrappers for batched simulators (ManiSkill).

Observations, rewards and flags stay torch tensors on the simulator's device: no per-step host
copy, one batched model call per step. Models with ``predict_torch(batch) -> tensor`` (every
:class:`~reward_wrappers.models.networks.TorchRewardModel`) run on the tensors directly; move the model
to the env's device first (``model.to(env.device)``). Other models fall back to ``predict`` on a
host copy. On CUDA the NaN/inf check is a device-side assert (raised at the next
synchronisation); on CPU it raises ``FloatingPointError`` at once.

Conventions followed are those of ManiSkill's ``ManiSkillVectorEnv``
(``mani_skill/vector/wrappers/gymnasium.py``): SAME_STEP autoreset; the batch's pre-reset
observation in ``info["final_observation"]`` (a full batched tensor or dict of tensors, *not*
gymnasium's per-env object array) with mask ``info["_final_observation"]``; the step's own info
in ``info["final_info"]`` (batched); ``terminations`` possibly a Python bool, all False under
``ignore_terminations=True``; partial resets via ``reset(options={"env_idx": idx})``. Per-env
values go into ``info`` as ``(B,)`` tensors (ManiSkill adds no ``_key`` masks).

ManiSkill observations must already be keyed as the model's spec (``"state"``, ``"rgb"``):
use ``obs_mode="state"`` (a plain tensor is keyed ``"state"``) or ManiSkill's
``FlattenRGBDObservationWrapper`` (``{"state", "rgb"}``) before ``ManiSkillVectorEnv``.

>>> import gymnasium as gym, mani_skill.envs  # doctest: +SKIP
>>> from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv  # doctest: +SKIP
>>> env = ManiSkillVectorEnv(gym.make("PushCube-v1", num_envs=1, sim_backend="cpu"))  # doctest: +SKIP
>>> env = TorchPBRS(env, lambda batch: batch["state"][:, 0], gamma=0.8)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from gymnasium.vector import VectorEnv

from reward_wrappers.cores.ops import Array, Mask, TorchOps
from reward_wrappers.twins import MISSING
from reward_wrappers.vector import VectorInfo, VectorLearnedReward, VectorPBRS, VectorProgressReward

__all__ = ["TorchLearnedReward", "TorchPBRS", "TorchProgressReward", "env_device"]

#: Keys of the pre-reset observation in a SAME_STEP info: ManiSkill 3.0's name, then gymnasium's.
FINAL_OBS_KEYS = ("final_observation", "final_obs")


def env_device(env: VectorEnv) -> torch.device:
    """The device a batched env's tensors live on (``env.device``, ManiSkill's ``base_env.device``)."""
    for candidate in (env, getattr(env, "unwrapped", None)):
        device = getattr(candidate, "device", None)
        if device is not None:
            return torch.device(device)
    return torch.device("cpu")


class TorchConventions:
    """ManiSkillVectorEnv conventions (see the module docstring) for a :class:`VectorCoreWrapper`;
    ``device`` (default: the env's) replaces the vector twins' ``ops``."""

    num_envs: int
    ops: TorchOps
    _keys: tuple[str, ...]
    single_observation_space: Any
    extra_options = (inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None,
                                       annotation="torch.device | str | None"),)

    def __init__(self, env: VectorEnv, model: Any = MISSING, *, device: torch.device | str | None = None, **options: Any) -> None:
        super().__init__(env, model, ops=TorchOps(device if device is not None else env_device(env)), **options)  # type: ignore[call-arg]

    def _reset_mask(self, options: Optional[dict[str, Any]]) -> Optional[Mask]:
        if not options:
            return None
        if "env_idx" in options:
            mask = self.ops.falses(self.num_envs)
            mask[torch.as_tensor(options["env_idx"], device=self.ops.device)] = True
            return mask
        if "reset_mask" in options:
            return self.ops.bools(options["reset_mask"])
        return None

    def _final_frames(self, frames: dict[str, Array], info: VectorInfo) -> tuple[Optional[Mask], dict[str, Array]]:
        for key in FINAL_OBS_KEYS:
            if key in info:
                mask = self.ops.bools(info["_" + key])
                final = self._frames(info[key], info.get("final_info"))  # type: ignore[attr-defined]
                next_frames = {}
                for k, frame in frames.items():
                    where = mask.view(-1, *([1] * (frame.dim() - 1)))
                    next_frames[k] = torch.where(where, final[k], frame)
                return mask, next_frames
        return None, frames

    def _put(self, info: VectorInfo, key: str, values: Array, mask: Optional[Mask] = None) -> None:
        info[key] = values
        if mask is not None:
            info["_" + key] = mask


class TorchLearnedReward(TorchConventions, VectorLearnedReward):
    """Torch-batched twin of :class:`reward_wrappers.learned_reward.LearnedReward` (same arguments, plus ``device``)."""


class TorchPBRS(TorchConventions, VectorPBRS):
    """Torch-batched twin of :class:`reward_wrappers.pbrs.PBRS` (same arguments, plus ``device``)."""


class TorchProgressReward(TorchConventions, VectorProgressReward):
    """Torch-batched twin of :class:`reward_wrappers.progress_reward.ProgressReward` (same arguments, plus ``device``)."""
