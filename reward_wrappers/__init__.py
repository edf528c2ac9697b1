"""Swap an env's reward for a learned model's output, or add potential-based shaping.

This package owns the reward-model interface (:mod:`reward_wrappers.base`), the network classes
(:mod:`reward_wrappers.networks`), checkpoint I/O (:mod:`reward_wrappers.checkpoint`) and every
wrapper that changes a reward.
"""

from reward_wrappers.base import InputSpec, ModelSpec, RewardModel, as_reward_model
from reward_wrappers.checkpoint import load_reward_model, save_reward_model
from reward_wrappers.networks import TorchRewardModel, build_network
