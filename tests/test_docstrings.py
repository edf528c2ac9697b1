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
    "reward_wrappers", "reward_wrappers.models.base", "reward_wrappers.cores.rewards", "reward_wrappers.learned_reward",
    "reward_wrappers.pbrs", "reward_wrappers.progress_reward", "reward_wrappers.sb3", "reward_wrappers.vector",
    "reward_wrappers.models.networks", "reward_wrappers.models.progress_networks", "reward_wrappers.models.checkpoint",
    "reward_wrappers.models.registry", "reward_wrappers.cores.ops", "reward_wrappers.checker", "reward_wrappers.models.frames", "envs.batched", "agents.batched_vec", "reward_wrappers.models.encoders", "reward_wrappers.models.frame_nets", "reward_wrappers.models.backbones", "reward_wrappers.embedding", "reward_wrappers.models.transformer_net",
    "reward_wrappers.twins", "reward_wrappers.legacy_paths", "reward_wrappers.process.fusion", "reward_wrappers.process.net", "reward_wrappers.process.potential", "trainers.process_labels",
    "trainers.data", "trainers.embed", "trainers.evaluate", "trainers.metrics", "trainers.preference", "trainers.progress_targets", "trainers.loop",
    "agents.compare", "agents.train", "agents.defaults", "agents.bench", "agents.preflight", "agents.config",
    "collectors.labelling", "agents.inspect_cmd", "agents.labelling.queue", "agents.labelling.sources", "agents.labelling.server",
    "agents.labelling.command", "agents.labelling.accounting", "agents.labelling.choice",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
