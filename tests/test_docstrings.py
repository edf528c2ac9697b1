"""Every ``>>>`` example in the packages' docstrings runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Modules whose docstrings hold examples (the ManiSkill ones need the simulator).
MODULES = [
    "collectors", "collectors.format", "collectors.frames", "collectors.writer", "collectors.process_writer",
    "collectors.recorder", "collectors.reader", "collectors.rollout", "collectors.rlinf", "collectors.atomic",
    "collectors.columns", "collectors.root", "collectors.wire", "collectors.ray_cluster",
    "envs", "envs.point_base", "envs.point_reach", "envs.point_key_door", "envs.factory", "envs.wrappers",
    "envs.experts", "envs.spaces", "envs.options", "envs.dummy",
    pytest.param("envs.maniskill", marks=pytest.mark.maniskill),
    pytest.param("envs.maniskill_experts", marks=pytest.mark.maniskill),
    "reward_wrappers", "reward_wrappers.base", "reward_wrappers.core", "reward_wrappers.learned_reward",
    "reward_wrappers.pbrs", "reward_wrappers.progress_reward", "reward_wrappers.sb3", "reward_wrappers.vector",
    "reward_wrappers.networks", "reward_wrappers.progress_networks", "reward_wrappers.checkpoint",
    "reward_wrappers.registry", "reward_wrappers.ops", "reward_wrappers.checker", "reward_wrappers.frames", "envs.batched", "agents.batched_vec", "reward_wrappers.encoders", "reward_wrappers.frame_nets", "reward_wrappers.backbones", "reward_wrappers.embedding", "reward_wrappers.transformer_net",
    "reward_wrappers.twins", "reward_wrappers.process_fusion", "reward_wrappers.process_net", "reward_wrappers.process_potential", "trainers.process_labels",
    "trainers.data", "trainers.embed", "trainers.evaluate", "trainers.metrics", "trainers.preference", "trainers.progress_targets", "trainers.loop",
    "agents.compare", "agents.train", "agents.defaults", "agents.bench", "agents.preflight", "agents.config",
    "collectors.labelling", "agents.inspect_cmd", "agents.labelling.queue", "agents.labelling.sources", "agents.labelling.server",
    "agents.labelling.command", "agents.labelling.accounting", "agents.labelling.choice",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
