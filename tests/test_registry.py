"""The registry of reward-model kinds and architectures (issue 17): a third-party package adds a
kind through an entry point and a fresh process uses it from the CLI end to end; a checkpoint
names an architecture, never a module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent(
    """
    import numpy as np
    import torch
    import torch.nn as nn

    from collectors import load_trajectories
    from reward_wrappers.models.base import ModelSpec
    from reward_wrappers.models.checkpoint import save_reward_model
    from reward_wrappers.models.networks import TorchRewardModel
    from reward_wrappers.sb3 import VecLearnedReward
    from trainers.data import input_specs
    from trainers.kinds import RewardKind


    class LinearLogit(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.linear = nn.Linear(spec.inputs["state"].shape[0], 1)

        def forward(self, batch):
            return self.linear(batch["state"].float())


    def add_arguments(parser):
        parser.add_argument("--data", required=True)
        parser.add_argument("--out", required=True)
        parser.add_argument("--steps", type=int, default=300)


    def run(args):
        trajectories = load_trajectories(args.data)
        x = torch.as_tensor(np.concatenate([np.asarray(t.obs["state"]) for t in trajectories]), dtype=torch.float32)
        y = torch.as_tensor(np.concatenate([np.asarray(t.labels) for t in trajectories]), dtype=torch.float32)
        spec = ModelSpec(inputs=input_specs(trajectories, ["state"]), window=1, output="logit", threshold=0.5)
        torch.manual_seed(0)
        net = LinearLogit(spec)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(args.steps):
            loss = nn.functional.binary_cross_entropy_with_logits(net({"state": x})[:, 0], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        save_reward_model(TorchRewardModel(net, spec, {"name": "linear_logit", "kwargs": {}}), args.out,
                          metadata={"kind": "linear_success"})
        print(f"final loss {float(loss):.3f}")
        return 0


    KIND = RewardKind("linear_success", "logistic regression on state (a third-party kind)", add_arguments, run,
                      wrapper=VecLearnedReward, default_output="prob")
    """
)

ENTRY_POINTS = """\
[rewardswap.reward_kinds]
linear_success = rs_plugin:KIND

[rewardswap.architectures]
linear_logit = rs_plugin:LinearLogit
"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_third_party_kind_found_through_its_entry_point_fits_and_trains_from_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "rs_plugin").mkdir(parents=True)
    (site / "rs_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "rs_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rs-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    repo = Path(__file__).resolve().parents[1]
    plugged = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(repo)])}
    bare = {**os.environ, "PYTHONPATH": str(repo)}

    data, model, run = tmp_path / "data", tmp_path / "linear.pt", tmp_path / "run"
    done = cli(bare, "collect", "--env", "PointReach-v0", "--episodes", "16", "--noise", "0.7", "--out", str(data),
               "--no-progress")
    assert done.returncode == 0, done.stderr
    done = cli(plugged, "train-reward", "--help")
    assert "linear_success" in done.stdout
    done = cli(plugged, "train-reward", "linear_success", "--data", str(data), "--out", str(model))
    assert done.returncode == 0, done.stderr
    done = cli(plugged, "train-agent", "--env", "PointReach-v0", "--reward", f"linear_success:{model}", "--steps", "2048",
               "--n-envs", "2", "--eval-freq", "1024", "--eval-episodes", "2", "--logdir", str(run))
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "run_config.json").read_text())["config"]["reward"] == f"linear_success:{model}"

    # Without the package, nothing in the checkpoint makes anything importable: it names its
    # architecture, and the error says how to provide it.
    done = subprocess.run([sys.executable, "-c", f"from reward_wrappers import load_reward_model; load_reward_model({str(model)!r})"],
                          env=bare, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unknown architecture 'linear_logit'" in done.stderr
    assert "register_architecture" in done.stderr and "rewardswap.architectures" in done.stderr
    done = cli(bare, "train-agent", "--reward", f"linear_success:{model}", "--logdir", str(tmp_path / "r2"))
    assert done.returncode == 2 and "unknown reward-model kind 'linear_success'" in done.stderr


def test_registering_in_process() -> None:
    import torch.nn as nn

    from reward_wrappers.models.registry import architecture_class, register_architecture

    class Mine(nn.Module):
        def __init__(self, spec):
            super().__init__()

    register_architecture("mine_for_test", Mine)
    assert architecture_class("mine_for_test") is Mine

    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_architecture("mine_for_test", Other)


def test_every_kind_infers_its_inputs_from_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: fit_preference (and the others) defaulted to rgb and failed on state-only data.
    import collectors
    import envs
    from reward_wrappers import load_reward_model
    from trainers import fit_classifier, fit_preference, fit_progress

    for obs, want in (("state", ["state"]), ("state+rgb", ["rgb"])):
        data = tmp_path / obs
        env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs=obs, render_size=16, ignore_terminations=True), data)
        collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.6, seed=e), range(10), seed=0)
        env.close()
        for fit in (fit_classifier, fit_progress, fit_preference):
            path = fit(data, tmp_path / f"{obs}_{fit.__name__}.pt", epochs=1, progress=False)
            assert list(load_reward_model(path).spec.inputs) == want, (obs, fit.__name__)
        assert f"the model reads {want}" in capsys.readouterr().err
