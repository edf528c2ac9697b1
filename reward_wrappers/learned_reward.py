"""Replace (or mix) an env's reward with a learned reward model's output.

>>> import gymnasium as gym
>>> env = LearnedReward(gym.make("CartPole-v1"), lambda batch: 10.0 * batch["state"][:, 0])
>>> _ = env.reset(seed=0)
>>> _, reward, _, _, info = env.step(0)
>>> 0.0 < reward < 1.0, info["env_reward"]
(True, 1.0)
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from reward_wrappers.cores.rewards import LearnedRewardCore
from reward_wrappers.single import CoreWrapper

__all__ = ["LearnedReward"]


class LearnedReward(CoreWrapper[ObsType, ActType], gym.utils.RecordConstructorArgs, core=LearnedRewardCore):
    """Reward from a model evaluated on the observation each step reaches (``s'``).

    Args:
        env: the env; its observation space must match ``model.spec`` (checked here: a missing
            key, or a shape or dtype that differs, raises ``ValueError`` naming expected and
            actual).
        model: a reward model (``spec`` + ``predict``) or a callable ``f(batch) -> (B,)``. A
            callable is taken to return a logit. A model with ``spec.window > 1`` gets its
            causal frame window (restarted every episode).
        mode: ``"replace"`` (``model_weight * learned``), ``"add"`` (``env + model_weight *
            learned``) or ``"weighted"`` (``env_weight * env + model_weight * learned``).
        output: ``"prob"`` (sigmoid of a classifier's logit), ``"binary"`` (1.0 once the
            success rule below holds, else 0.0), ``"logit"`` (the logit itself) or ``"raw"``
            (any model's output as is; the only choice for progress/reward models besides
            ``"binary"``).
        threshold: a frame is positive when its probability (a classifier) or raw output (other
            models) exceeds this. ``None`` (the default) uses ``model.spec.threshold``, the
            threshold saved with the checkpoint (0.5 for a spec-less callable).
        hold_steps: success only after this many consecutive positive frames within an episode
            (the reset frame does not count); guards against single-frame false positives. It
            decides ``info["learned_success"]``, the ``"binary"`` reward and
            ``terminate_on_success``; a ``"prob"``/``"logit"``/``"raw"`` reward is not gated.
        terminate_on_success: end the episode (``terminated=True``) on learned success.

    ``info`` gets ``env_reward`` (the env's own reward; an inner reward wrapper's value is kept,
    so it is always the true env reward), ``learned_reward`` (the model term before mixing),
    ``learned_success``; the env's ``success`` flag is mirrored into ``is_success`` (SB3 logs
    that one as ``rollout/success_rate``). NaN/inf model output raises ``FloatingPointError``.

    Vectorised twins: :class:`reward_wrappers.sb3.VecLearnedReward`,
    :class:`reward_wrappers.vector.VectorLearnedReward`,
    :class:`reward_wrappers.torch_batched.TorchLearnedReward`.
    """
