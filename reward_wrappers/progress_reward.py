"""Reward from a progress model fed a causal window of each episode's past frames.

The model sees ``spec.window`` frames ending at the current one (oldest first), chosen by its
frame sampling (the last ones, strided, or uniform over the episode so far); early in an
episode the first frame fills the window (:func:`reward_wrappers.models.base.window_indices`, the rule
the trainers use), and the window restarts on every episode start, so no frame of a previous
episode ever leaks in.

``output="progress"`` pays the progress of ``s'``; ``"delta"`` pays ``progress(s') -
progress(s)``. Both are plain rewards, not shaping: ``"delta"`` is PBRS with ``gamma = 1`` and
no terminal zeroing, which is *not* policy-invariant for an agent with ``gamma < 1`` (it pays
``(1 - gamma) * progress`` for hovering). For policy-invariant shaping use
``PBRS(env, progress_model, gamma=<agent's gamma>)``; a windowed potential is then a function of
the history-augmented state, and the invariance holds for that state.

>>> import gymnasium as gym
>>> env = ProgressReward(gym.make("CartPole-v1"), lambda batch: batch["state"][:, 0], output="delta")
>>> _ = env.reset(seed=0)
>>> _, reward, _, _, info = env.step(0)
>>> sorted(k for k in info if k in ("env_reward", "learned_reward", "progress"))
['env_reward', 'learned_reward', 'progress']
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from reward_wrappers.cores.rewards import ProgressCore
from reward_wrappers.single import CoreWrapper

__all__ = ["ProgressReward"]


class ProgressReward(CoreWrapper[ObsType, ActType], gym.utils.RecordConstructorArgs, core=ProgressCore):
    """Reward from a (windowed) progress model.

    Args:
        env: the env; its observation space must match ``model.spec``.
        model: a progress model (``spec.output == "progress"``, any ``spec.window``) or a
            callable over single frames.
        output: ``"progress"`` or ``"delta"`` (see the module docstring).
        mode, env_weight, model_weight: how the progress term mixes with the env reward, as in
            :class:`~reward_wrappers.learned_reward.LearnedReward` (default: replace).

    ``info`` gets ``progress`` (the model's value at ``s'``), ``learned_reward`` and
    ``env_reward``.

    Vectorised twins: :class:`reward_wrappers.sb3.VecProgressReward`,
    :class:`reward_wrappers.vector.VectorProgressReward`,
    :class:`reward_wrappers.torch_batched.TorchProgressReward`.
    """
