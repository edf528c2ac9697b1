"""What users import keeps working across the reward_wrappers sub-packages (issue 34): every public
name, the module paths the README and docstrings showed before the move, the rl-zoo3 style
``reward_wrappers.LearnedReward`` string, and checkpoints written before the move."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "checkpoints_before_subpackages"

PUBLIC_NAMES = [
    "FusionOverride", "Goal", "InputSpec", "LearnedReward", "ModelSpec", "PBRS", "ProcessEpisode", "ProcessPotential",
    "ProgressReward", "RewardModel", "TorchLearnedReward", "TorchPBRS", "TorchProgressReward", "TorchRewardModel",
    "VecLearnedReward", "VecPBRS", "VecProgressReward", "VectorLearnedReward", "VectorPBRS", "VectorProgressReward",
    "architecture_class", "architectures", "as_reward_model", "build_network", "load_reward_model",
    "register_architecture", "save_reward_model",
]

# (old module path, a name imported from it before the move, where that name lives now)
OLD_PATHS = [
    ("reward_wrappers.sb3", "VecLearnedReward", "reward_wrappers.sb3"),
    ("reward_wrappers.checker", "check_reward_stack", "reward_wrappers.checker"),
    ("reward_wrappers.frame_nets", "ImageRewardNet", "reward_wrappers.models.frame_nets"),
    ("reward_wrappers.base", "ModelSpec", "reward_wrappers.models.base"),
    ("reward_wrappers.networks", "TorchRewardModel", "reward_wrappers.models.networks"),
    ("reward_wrappers.backbones", "Backbone", "reward_wrappers.models.backbones"),
    ("reward_wrappers.core", "LearnedRewardCore", "reward_wrappers.cores.rewards"),
    ("reward_wrappers.registry", "register_architecture", "reward_wrappers.models.registry"),
    ("reward_wrappers.checkpoint", "load_reward_model", "reward_wrappers.models.checkpoint"),
    ("reward_wrappers.process_potential", "ProcessPotential", "reward_wrappers.process.potential"),
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_imports_from_the_package(name: str) -> None:
    package = importlib.import_module("reward_wrappers")
    assert name in package.__all__
    assert getattr(package, name) is not None


@pytest.mark.parametrize("old, name, new", OLD_PATHS)
def test_module_paths_from_before_the_move_give_the_same_objects(old: str, name: str, new: str) -> None:
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_the_rl_zoo_style_wrapper_string_resolves() -> None:
    from gymnasium.envs.registration import load_env_creator

    from reward_wrappers import LearnedReward

    assert load_env_creator("reward_wrappers:LearnedReward") is LearnedReward
    module, _, attr = "reward_wrappers.LearnedReward".rpartition(".")  # how rl-zoo3 splits hyperparameter strings
    assert getattr(importlib.import_module(module), attr) is LearnedReward


def test_checkpoints_written_before_the_move_load_and_predict_the_same() -> None:
    from reward_wrappers import load_reward_model

    expected = json.loads((DATA / "expected.json").read_text())
    inputs = np.load(DATA / "inputs.npz")
    for file, values in expected.items():
        model = load_reward_model(DATA / file)
        (key,) = model.spec.inputs
        np.testing.assert_allclose(model.predict({key: inputs[key]}), values, rtol=1e-5, atol=1e-6)
