"""Swap an env's reward for a learned model's output, or add potential-based shaping.

This package owns the reward-model interface (:mod:`reward_wrappers.models.base`), the network classes
(:mod:`reward_wrappers.models.networks`), checkpoint I/O (:mod:`reward_wrappers.models.checkpoint`) and every
wrapper that changes a reward.

Reward wrappers (every one has vectorised twins, see :mod:`reward_wrappers.sb3`,
:mod:`reward_wrappers.vector`, :mod:`reward_wrappers.torch_batched`):
:class:`LearnedReward` (a classifier's probability/decision, or any model's output, replacing or
mixed with the env reward), :class:`PBRS` (potential-based shaping with the agent's gamma) and
:class:`ProgressReward` (a progress model over a causal frame window). The env's own reward is
always in ``info["env_reward"]``.

Recipe: the policy sees fewer keys than the reward model (reward from ``rgb``, policy on
``state``). Stack the reward wrapper first, on the full observation, then gymnasium's own
observation wrappers to hide what the policy must not see:

>>> import envs
>>> from gymnasium.wrappers import FilterObservation, FlattenObservation
>>> from reward_wrappers import LearnedReward, ModelSpec, TorchRewardModel
>>> env = envs.make("PointReach-v0", obs="state+rgb", seed=0)
>>> rgb_model = TorchRewardModel.build(ModelSpec.from_space(env.observation_space, ("rgb",)), encoder="cnn")
>>> env = LearnedReward(env, rgb_model)                          # reward from rgb ...
>>> env = FlattenObservation(FilterObservation(env, ["state"]))  # ... policy on state
>>> env.observation_space.shape
(6,)
>>> obs, info = env.reset(seed=0)
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
>>> obs.shape, 0.0 < reward < 1.0, "env_reward" in info
((6,), True, True)

For a gymnasium vector env use the vector versions in the same order
(``VectorLearnedReward``, then ``gymnasium.wrappers.vector.FilterObservation`` and
``FlattenObservation``). For SB3, stack ``VecLearnedReward`` on the full VecEnv, then
``stable_baselines3.common.vec_env.VecExtractDictObs(venv, "state")``; ``rewardswap
train-agent --policy-obs state`` does exactly that.
"""

from reward_wrappers import legacy_paths

legacy_paths.install()  # e.g. reward_wrappers.frame_nets, now reward_wrappers.models.frame_nets

# The built-in architectures register when imported; a checkpoint names its architecture (models.registry).
from reward_wrappers.models import frame_nets, progress_networks, transformer_net  # noqa: F401
from reward_wrappers.process import net as _process_net  # noqa: F401
from reward_wrappers.models.base import InputSpec, ModelSpec, RewardModel, as_reward_model
from reward_wrappers.models.checkpoint import load_reward_model, save_reward_model
from reward_wrappers.models.networks import TorchRewardModel, build_network
from reward_wrappers.models.registry import architecture_class, architectures, register_architecture

# Reward wrappers (issue 4). Per-env wrappers first, then their vectorised twins (one batched
# model call per step): SB3 VecEnv (`reward_wrappers.sb3`), gymnasium vector
# (`reward_wrappers.vector`), torch-batched ManiSkill (`reward_wrappers.torch_batched`).
from reward_wrappers.learned_reward import LearnedReward
from reward_wrappers.pbrs import PBRS
from reward_wrappers.progress_reward import ProgressReward
from reward_wrappers.sb3 import VecLearnedReward, VecPBRS, VecProgressReward
from reward_wrappers.vector import VectorLearnedReward, VectorPBRS, VectorProgressReward
from reward_wrappers.torch_batched import TorchLearnedReward, TorchPBRS, TorchProgressReward

# The process reward (seed 004): a stateful potential for any PBRS twin above.
from reward_wrappers.process.fusion import FusionOverride
from reward_wrappers.process.potential import Goal, ProcessEpisode, ProcessPotential

__all__ = [
    "FusionOverride", "Goal", "InputSpec", "LearnedReward", "ModelSpec", "PBRS", "ProcessEpisode",
    "ProcessPotential", "ProgressReward", "RewardModel", "TorchLearnedReward", "TorchPBRS", "TorchProgressReward",
    "TorchRewardModel", "VecLearnedReward", "VecPBRS", "VecProgressReward", "VectorLearnedReward", "VectorPBRS",
    "VectorProgressReward", "architecture_class", "architectures", "as_reward_model", "build_network",
    "load_reward_model", "register_architecture", "save_reward_model"
]
