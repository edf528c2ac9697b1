"""train-agent --init-from: a run starts from a previous run's agent, read without unpickling."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch

from agents.train import TrainConfig, train_agent

# No gradient step happens before learning_starts: a warm-started run that never learns must end
# with exactly the source's weights, which makes the loading itself observable.
FROZEN = {"learning_starts": 10_000, "batch_size": 8}


def _run(tmp_path, name, **kwargs):
    settings = dict(env="PointReach-v0", algo="sac", reward="env", steps=64, n_envs=2, seed=0, eval_episodes=2,
                    eval_freq=10_000, normalize_obs=True, algo_kwargs={"learning_starts": 16, "batch_size": 8})
    settings.update(kwargs)
    train_agent(TrainConfig(logdir=str(tmp_path / name), **settings))
    return tmp_path / name


def _tensors(run, member):
    with zipfile.ZipFile(run / "model.zip") as archive, archive.open(member) as f:
        return torch.load(f, weights_only=True)


def test_a_warm_started_run_begins_with_the_source_weights_optimisers_and_statistics(tmp_path):
    source = _run(tmp_path, "source", seed=1)
    stats = np.load(source / "obs_normalization.npz", allow_pickle=False)
    assert stats["obs.mean"].shape == (6,) and float(stats["obs.count"]) > 64  # the source's own observations

    warm = _run(tmp_path, "warm", init_from=str(source), algo_kwargs=FROZEN)
    cold = _run(tmp_path, "cold", algo_kwargs=FROZEN)
    src, got, fresh = (_tensors(r, "policy.pth") for r in (source, warm, cold))
    assert all(torch.equal(src[k], got[k]) for k in src)  # every weight, the critics' targets too
    assert not all(torch.equal(src[k], fresh[k]) for k in src)  # (a fresh run of another seed differs)
    src_opt, got_opt = _tensors(source, "actor.optimizer.pth"), _tensors(warm, "actor.optimizer.pth")
    assert src_opt["state"] and all(torch.equal(src_opt["state"][0][k], got_opt["state"][0][k]) for k in ("exp_avg", "step"))
    assert torch.equal(_tensors(source, "pytorch_variables.pth")["log_ent_coef"],
                       _tensors(warm, "pytorch_variables.pth")["log_ent_coef"])
    # the statistics continued from the source's: its count plus this run's 64 steps and resets
    warm_stats = np.load(warm / "obs_normalization.npz", allow_pickle=False)
    assert float(warm_stats["obs.count"]) > float(stats["obs.count"]) + 64
    recorded = json.loads((warm / "run_config.json").read_text())["init_from"]
    assert recorded["sha256"] == hashlib.sha256((source / "model.zip").read_bytes()).hexdigest()
    assert json.loads((cold / "run_config.json").read_text())["init_from"] is None


def test_a_source_that_does_not_fit_is_named(tmp_path):
    source = _run(tmp_path, "source")
    with pytest.raises(ValueError, match="its algorithm is sac, this run's is ppo"):
        _run(tmp_path, "ppo", algo="ppo", init_from=str(source), algo_kwargs={"n_steps": 16, "batch_size": 16})
    with pytest.raises(ValueError, match=r"its observation space is .*\[6\].*this run's is .*\[9\]"):
        _run(tmp_path, "door", env="PointKeyDoor-v0", init_from=str(source / "model.zip"))
    (source / "obs_normalization.npz").unlink()
    with pytest.raises(FileNotFoundError, match="normalises observations and the source has no obs_normalization.npz"):
        _run(tmp_path, "nostats", init_from=str(source))
    _run(tmp_path, "unnormalised", init_from=str(source), normalize_obs=False)  # nothing to load: fine
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        TrainConfig(init_from=str(tmp_path / "missing"))
    (tmp_path / "not.zip").write_bytes(b"PK-not-really")
    with pytest.raises(ValueError, match="not an SB3 model.zip"):
        _run(tmp_path, "bad", init_from=str(tmp_path / "not.zip"))


def test_bench_conditions_continue_the_source_run_of_their_own_seed(tmp_path, capsys):
    from agents.cli import main

    _run(tmp_path, "dense_seed0")
    args = ["bench", "--env", "PointReach-v0", "--algo", "sac", "--steps", "64", "--n-envs", "2", "--eval-episodes", "2",
            "--out", str(tmp_path / "bench"), "--algo-kwargs", json.dumps(FROZEN), "--jobs", "1",
            "--conditions", f"env@init-from={tmp_path}/dense_seed{{seed}}"]
    assert main([*args, "--seeds", "2"]) == 2  # seed 1 has no source run: named before any run starts
    assert "dense_seed1: no such run directory" in capsys.readouterr().err
    assert not (tmp_path / "bench" / "runs").exists()
    assert main([*args, "--seeds", "1"]) == 0
    run = next((tmp_path / "bench" / "runs").iterdir())
    assert json.loads((run / "run_config.json").read_text())["init_from"]["model"] == str(tmp_path / "dense_seed0" / "model.zip")
