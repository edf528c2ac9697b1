"""Environments for RewardSwap: ``envs.make``, built-in tasks, scripted experts, key conventions.

>>> import envs
>>> env = envs.make("PointReach-v0", obs="rgb", seed=0)
>>> policy = envs.expert_policy(env, seed=0)
>>> obs, info = env.reset()
>>> for _ in range(50):
...     obs, reward, terminated, truncated, info = env.step(policy(obs))
...     if terminated or truncated:
...         break
>>> info["success"]
True
"""

from envs.experts import SUPPORTED_EXPERT_ENV_IDS, expert_policy
from envs.factory import (
    BUILTIN_ENV_IDS,
    ENV_FAMILIES,
    check_env_id,
    env_family,
    is_maniskill_id,
    make,
    register_builtin_envs,
    resolve_env_id,
    step_seconds,
    supports_ignore_terminations,
)
from envs.options import add_env_arguments, env_spec, parse_env_kwargs, parse_json_object, spec_differences
from envs.spaces import ObsDict, default_key, is_image_space, key_spaces, obs_keys, obs_to_dict

register_builtin_envs()

__all__ = [
    "BUILTIN_ENV_IDS",
    "SUPPORTED_EXPERT_ENV_IDS",
    "ObsDict",
    "ENV_FAMILIES",
    "add_env_arguments",
    "check_env_id",
    "env_family",
    "env_spec",
    "default_key",
    "expert_policy",
    "is_image_space",
    "is_maniskill_id",
    "key_spaces",
    "make",
    "obs_keys",
    "obs_to_dict",
    "parse_env_kwargs",
    "parse_json_object",
    "register_builtin_envs",
    "resolve_env_id",
    "spec_differences",
    "step_seconds",
    "supports_ignore_terminations",
]
