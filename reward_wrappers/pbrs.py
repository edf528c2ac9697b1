"""Potential-based reward shaping (Ng, Harada & Russell 1999), safe at episode boundaries.

``r' = r + F`` with ``F = gamma * Phi(s') - Phi(s)``, where:

* ``gamma`` is the **agent's** discount (another value adds ``(gamma_s - gamma) * Phi(s')``, a
  state reward that changes the optimal policy), so it has no default;
* ``Phi(s') := 0`` on a **terminated** step only; on truncation (a time limit) the agent
  bootstraps from ``s'`` and ``Phi(s')`` is kept;
* ``reset`` pays nothing and caches ``Phi(s_0)``.

Over an episode ``sum_t gamma^t F_t = gamma^T Phi(s_T) - Phi(s_0)`` (``Phi(s_T) = 0`` if it
terminated): the shaped return differs from the true one by a term that does not depend on the
actions, so the optimal policy is unchanged. A potential computed from a window of past frames
(``spec.window > 1``) is a function of the *history-augmented* state; the guarantee holds for
that state, not for the single frame.

>>> import gymnasium as gym
>>> env = PBRS(gym.make("CartPole-v1"), lambda batch: batch["state"][:, 0], gamma=0.99)
>>> _, info = env.reset(seed=0)
>>> _, reward, _, _, info = env.step(0)
>>> abs(reward - (info["env_reward"] + info["shaping_reward"])) < 1e-12
True
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from reward_wrappers.cores.rewards import PBRSCore
from reward_wrappers.single import CoreWrapper

__all__ = ["PBRS"]


class PBRS(CoreWrapper[ObsType, ActType], gym.utils.RecordConstructorArgs, core=PBRSCore):
    """Add ``gamma * Phi(s') - Phi(s)`` to the reward of ``env`` (which may itself be a reward wrapper).

    Args:
        env: the env, or any reward wrapper (composes with :class:`LearnedReward` either way).
        potential: ``Phi``. A reward model is read per ``spec.output``: a classifier
            (``"logit"``) gives its probability, a progress or reward model its raw output. A
            plain callable ``f(batch) -> (B,)`` *is* the potential (used as is).
        gamma: the agent's discount factor; required.
        min_confidence: with a model offering ``predict_confidence`` (``spec.has_confidence``),
            ``Phi(s) = 0`` where the confidence is below this. Gating on a function of the state
            keeps the shaping potential-based.
        scale: ``Phi`` is the model's potential times this (a potential in [0, 1] is small beside
            a sparse success return of up to ``1 / (1 - gamma)``; any positive scale keeps the
            optimal policy).
        offset: added before the scale, ``Phi = scale * (potential + offset)``. ``Phi`` is 0 on
            termination, so a potential high at the goal makes the finishing step pay it back
            (``-Phi(s)``); on an env that terminates on success, ``offset = -1`` for a [0, 1]
            progress potential puts ``Phi`` near 0 at the goal. Any offset keeps the optimal
            policy; it adds ``(1 - gamma) * scale * -offset`` to every non-terminal step and
            ``scale * -offset`` to the terminating one.

    ``info`` gets ``shaping_reward`` (``F``), ``potential`` (``Phi`` of the observation just
    returned, before terminal zeroing; on ``reset`` ``Phi(s_0)``) and ``env_reward``.

    Vectorised twins: :class:`reward_wrappers.sb3.VecPBRS`,
    :class:`reward_wrappers.vector.VectorPBRS`, :class:`reward_wrappers.torch_batched.TorchPBRS`.
    """
