"""agents: the whole pipeline on tiny budgets, and clear argument errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np

import pytest

from agents.cli import main
from reward_wrappers import load_reward_model


def test_demo_smoke_run_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    for name in ("expert.gif", "classifier.pt", "progress.pt", "report.md", "curves.png", "results.json"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    names = [row["condition"] for row in results["conditions"]]
    assert names == ["a_sparse_env", "b_dense_env", "c_classifier", "d_classifier+pbrs_progress", "e_progress"]
    for row in results["conditions"]:
        assert 0.0 <= row["final_true_success_mean"] <= 1.0
        curve = row["curves"][0]
        assert curve[0]["steps"] == 0 and curve[-1]["steps"] >= 2_048
    learned = [r for r in results["conditions"] if r["condition"] != "a_sparse_env" and r["condition"] != "b_dense_env"]
    assert all(r["reward_inference_share_mean"] > 0 for r in learned)
    report = (out / "report.md").read_text()
    assert "| c_classifier |" in report and "curves.png" in report
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The run directory of each condition reproduces it.
    config = json.loads((out / "runs" / "c_classifier_seed0" / "run_config.json").read_text())
    assert config["config"]["reward"].startswith("classifier:") and config["env_obs"] == "state+rgb"
    assert (out / "runs" / "c_classifier_seed0" / "model.zip").exists()

    html_path = tmp_path / "review.html"
    assert main(["inspect", str(out / "classifier.pt"), "--data", str(out / "data"), "--out", str(html_path)]) == 0
    page = html_path.read_text()
    assert page.count("<div class='traj'>") == 10 and "data:image/png;base64," in page


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--reward", "classifer:x.pt"], "unknown reward-model kind 'classifer'; known: ['classifier'"),
        (["--reward", "classifier:/nonexistent/model.pt"], "does not exist"),
        (["--pbrs", "/nonexistent/p.pt"], "does not exist"),
        (["--pbrs", "fn:envs.point_key_door:no_such_potential", "--steps", "64"], "has no function 'no_such_potential'"),
        (["--pbrs", "fn:envs.point_key_door", "--steps", "64"], "expected MODULE:FUNCTION"),
        (["--pbrs", "fn:envs.point_key_door:remaining_path_potential", "--process-goal", "obs:state"],
         "apply only to a process-reward model"),
        (["--pbrs-offset", "-1"], "give one with --pbrs"),
        (["--pbrs-scale", "2"], "give one with --pbrs"),
        (["--steps", "0"], "must be positive"),
        (["--gamma", "1.5"], "gamma"),
        (["--algo-kwargs", "{n_epochs: 4}"], "--algo-kwargs must be a JSON object"),
        (["--algo-kwargs", "[4]"], "--algo-kwargs must be a JSON object"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    ],
)
def test_train_agent_argument_errors_are_clear(argv, message, capsys):
    assert main(["train-agent", *argv]) == 2
    assert message in capsys.readouterr().err


def test_train_agent_algo_kwargs_and_threads_reach_the_agent(tmp_path):
    import torch

    threads_before = torch.get_num_threads()
    argv = ["train-agent", "--steps", "128", "--n-envs", "2", "--eval-freq", "128", "--eval-episodes", "1",
            "--algo-kwargs", '{"n_steps": 64, "batch_size": 32, "n_epochs": 3}', "--logdir", str(tmp_path),
            "--threads", "1" if threads_before != 1 else "2"]
    try:
        assert main(argv) == 0
        assert torch.get_num_threads() == int(argv[-1])
    finally:
        torch.set_num_threads(threads_before)
    config = json.loads((tmp_path / "run_config.json").read_text())
    hyper = config["hyperparameters"]
    assert (hyper["n_steps"], hyper["batch_size"], hyper["n_epochs"]) == (64, 32, 3)
    assert config["ignore_terminations"] is True  # the env's own reward too runs full-length episodes
    from stable_baselines3 import PPO

    agent = PPO.load(tmp_path / "model.zip")
    assert (agent.n_steps, agent.batch_size, agent.n_epochs) == (64, 32, 3)


def test_train_agent_unknown_algo_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train-agent", "--algo", "dqn"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_train_agent_env_reward_learns_point_reach(tmp_path):
    from agents.train import TrainConfig, train_agent

    summary = train_agent(TrainConfig(steps=16_384, n_envs=8, eval_freq=8_192, eval_episodes=20, logdir=str(tmp_path / "run")))
    assert summary["final_true_success"] >= 0.8
    assert summary["curve"][0]["success_rate"] <= 0.2


def test_condition_parsing():
    from agents.compare import Condition

    c = Condition.parse("classifier:c.pt+pbrs:p.pt")
    assert (c.name, c.reward, c.pbrs) == ("classifier+pbrs", "classifier:c.pt", "p.pt")
    assert Condition.parse("sparse") == Condition("sparse", "sparse", None)
    with pytest.raises(ValueError, match="expected pbrs:PATH"):
        Condition.parse("classifier:c.pt+shaping:p.pt")
    c = Condition.parse("classifier:c.pt+pbrs:p.pt@gamma=0.95")
    assert (c.name, c.reward, c.pbrs, c.gamma) == ("classifier+pbrs@0.95", "classifier:c.pt", "p.pt", 0.95)
    for bad, message in [("env@gamma=1.5", "gamma must be in"), ("env@gamma=x", "@gamma= expects a number"),
                         ("env@lr=0.1", "unknown option @lr="), ("env@refit-every=many", "@refit-every= expects an integer")]:
        with pytest.raises(ValueError, match=message):
            Condition.parse(bad)
    c = Condition.parse("classifier:c.pt+pbrs:p.pt@gamma=0.9@refit-every=500@label-budget=60@demos=dir@demo-ratio=0.25")
    assert (c.name, c.pbrs, c.gamma) == ("classifier+pbrs+refit+demos@0.9", "p.pt", 0.9)
    assert dict(c.options) == {"refit_every": 500, "label_budget": 60, "demos": "dir", "demo_ratio": 0.25}


def test_condition_gamma_reaches_its_runs_only(tmp_path):
    from agents.compare import Condition, format_table, run_conditions
    from agents.train import TrainConfig

    base = TrainConfig(env="PointReach-v0", steps=256, n_envs=2, eval_freq=256, eval_episodes=2, gamma=0.9,
                       algo_kwargs={"n_steps": 64, "batch_size": 64})
    conditions = [Condition.parse("sparse"), Condition.parse("sparse@gamma=0.5")]
    summary = run_conditions(conditions, base, [0], tmp_path, progress=False)
    gammas = {row["condition"]: row["gamma"] for row in summary["conditions"]}
    assert gammas == {"sparse": 0.9, "sparse@0.5": 0.5}
    for name, gamma in gammas.items():
        config = json.loads((tmp_path / "runs" / f"{name}_seed0" / "run_config.json").read_text())
        assert config["hyperparameters"]["gamma"] == gamma
    assert "| sparse@0.5 | 0.5 |" in format_table(summary)


def test_resumed_comparison_reuses_finished_runs_and_retrains_changed_ones(tmp_path):
    from dataclasses import replace

    from agents.compare import Condition, run_conditions
    from agents.train import TrainConfig

    base = TrainConfig(env="PointReach-v0", steps=128, n_envs=2, eval_freq=128, eval_episodes=1,
                       algo_kwargs={"n_steps": 64, "batch_size": 64})
    conditions = [Condition.parse("sparse"), Condition.parse("env")]
    first = run_conditions(conditions, base, [0], tmp_path, progress=False)
    models = {c.name: tmp_path / "runs" / f"{c.name}_seed0" / "model.zip" for c in conditions}
    stamps = {name: path.stat().st_mtime_ns for name, path in models.items()}
    # The env run was cut off before it finished: it has no eval.json, so it is trained again.
    (tmp_path / "runs" / "env_seed0" / "eval.json").unlink()
    again = run_conditions(conditions, base, [0], tmp_path, progress=False, resume=True)
    assert models["sparse"].stat().st_mtime_ns == stamps["sparse"]
    assert models["env"].stat().st_mtime_ns != stamps["env"]
    def outcomes(summary):
        return [(row["condition"], row["final_true_success_per_seed"], row["curves"]) for row in summary["conditions"]]

    assert outcomes(again) == outcomes(first)  # same seed, same machine: same runs
    # Changed settings are not reused, and without resume nothing is.
    stamps = {name: path.stat().st_mtime_ns for name, path in models.items()}
    run_conditions(conditions[:1], replace(base, eval_episodes=2), [0], tmp_path, progress=False, resume=True)
    assert models["sparse"].stat().st_mtime_ns != stamps["sparse"]
    stamps = {name: path.stat().st_mtime_ns for name, path in models.items()}
    run_conditions(conditions[1:], base, [0], tmp_path, progress=False)
    assert models["env"].stat().st_mtime_ns != stamps["env"]
    # ignore_terminations=None (train-agent's auto) is PointReach's True: the same run. False is not.
    assert base.ignore_terminations is None
    stamps = {name: path.stat().st_mtime_ns for name, path in models.items()}
    run_conditions(conditions[1:], replace(base, ignore_terminations=True), [0], tmp_path, progress=False, resume=True)
    assert models["env"].stat().st_mtime_ns == stamps["env"]
    run_conditions(conditions[1:], replace(base, ignore_terminations=False), [0], tmp_path, progress=False, resume=True)
    assert models["env"].stat().st_mtime_ns != stamps["env"]


def test_bench_errors_before_any_run(tmp_path, capsys):
    assert main(["bench", "--conditions", "sparse", "classifier:/nonexistent.pt", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--conditions", "sparse", "sparse", "--out", str(tmp_path)]) == 2
    assert "share a name" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_demo_errors_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--refine-steps", "64", "--refine-rounds", "0"]) == 2
    assert "--refine-rounds must be >= 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--quick", "--eval-episodes", "0"]) == 2
    assert "--eval-episodes must be >= 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--quick", "--learned-gamma", "1.5"]) == 2
    assert "--learned-gamma must be in (0, 1], got 1.5" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--env", "CartPole-v1"]) == 2
    assert "has no scripted expert" in capsys.readouterr().err
    assert not out.exists()


def test_learned_reward_with_observation_normalisation_evaluates_with_training_statistics(tmp_path):
    """Reward wrappers below VecNormalize; evaluation copies the training env's statistics."""
    import pickle

    from agents.train import TrainConfig, train_agent
    from tests.fake_trajectories import separable_trajectories
    from trainers import fit_classifier

    # A state classifier whose input shape matches PointReach's 6-d state.
    data = separable_trajectories(n=8)
    for t in data:
        t.obs["state"] = np.concatenate([t.obs["state"], t.obs["state"][:, :2]], axis=1)
    ckpt = fit_classifier(data, tmp_path / "clf.pt", inputs=("state",), epochs=1, steps_per_epoch=2, batch_size=16,
                          progress=False, hidden=16)
    run = tmp_path / "run"
    summary = train_agent(TrainConfig(reward=f"classifier:{ckpt}", pbrs=str(ckpt), gamma=0.9, normalize_obs=True,
                                      steps=1_024, n_envs=4, eval_freq=512, eval_episodes=4, logdir=str(run)))
    assert len(summary["curve"]) == 3 and summary["reward_inference_share"] > 0
    with open(run / "vecnormalize.pkl", "rb") as f:  # our own file, written by SB3
        stats = pickle.load(f)
    assert stats.obs_rms.count > 1_024
    # PBRS shapes with the agent's own discount (the classifier's probability as the potential here)
    from stable_baselines3 import PPO

    pbrs_gamma = json.loads((run / "run_config.json").read_text())["pbrs_gamma"]
    assert pbrs_gamma == PPO.load(run / "model.zip", device="cpu").gamma == 0.9


def test_evaluation_counts_the_same_number_of_episodes_from_every_env():
    """Short successful episodes must not crowd long failures out of the evaluation."""
    import envs
    from agents.callbacks import evaluate_true_success
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda i=i: envs.make("PointReach-v0", seed=i) for i in range(4)])
    expert = envs.expert_policy(venv.envs[0], seed=0)

    class ExpertInFirstEnvOnly:  # env 0 succeeds in a few steps; envs 1-3 stand still and time out
        def predict(self, obs, deterministic=True):
            actions = np.zeros((4, 2), np.float32)
            actions[0] = expert(obs[0])
            return actions, None

    result = evaluate_true_success(ExpertInFirstEnvOnly(), venv, episodes=20, seed=0)
    assert result["success_rate"] == pytest.approx(5 / 20)


def test_observation_normalisation_leaves_images_to_a_cnn(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.torch_layers import NatureCNN

    from agents.train import TrainConfig, train_agent

    train_agent(TrainConfig(policy_obs="state+rgb", normalize_obs=True, steps=128, n_envs=2, eval_freq=128,
                            eval_episodes=2, logdir=str(tmp_path / "run"), algo_kwargs={"n_steps": 64, "batch_size": 64}))
    agent = PPO.load(tmp_path / "run" / "model.zip", device="cpu")
    assert isinstance(agent.policy.features_extractor.extractors["rgb"], NatureCNN)
    assert agent.observation_space["rgb"].dtype == np.uint8


def test_default_ppo_minibatch_fits_one_rollout_of_few_envs(tmp_path, recwarn):
    from agents.defaults import default_hyperparameters
    from agents.train import TrainConfig, train_agent

    assert default_hyperparameters("ppo", "PointReach-v0")["batch_size"] > 32 * 2
    train_agent(TrainConfig(steps=128, n_envs=2, eval_freq=128, eval_episodes=1, logdir=str(tmp_path),
                            algo_kwargs={"n_steps": 32}))
    assert json.loads((tmp_path / "run_config.json").read_text())["hyperparameters"]["batch_size"] == 32 * 2
    assert not [w for w in recwarn if "mini-batch" in str(w.message)]


def _threads_after_training(cfg) -> int:
    import torch

    from agents.train import train_agent

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # conftest sets 1 for the whole suite
    try:
        train_agent(cfg)
        return torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_built_in_envs_leave_the_learners_threads_alone(tmp_path):
    from agents.train import TrainConfig

    cfg = TrainConfig(policy_obs="rgb", steps=64, n_envs=1, eval_freq=64, eval_episodes=1, logdir=str(tmp_path),
                      algo_kwargs={"n_steps": 32, "batch_size": 32})
    assert _threads_after_training(cfg) == 2  # numpy drawing does not contend with torch


@pytest.mark.maniskill
def test_maniskill_envs_step_in_worker_processes_and_built_in_envs_in_this_one():
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from agents.vec import make_vec_env

    venv = make_vec_env("PushCube-v1", n_envs=2, seed=0)
    try:
        assert isinstance(venv, SubprocVecEnv)  # one CPU sim per process (platform notes)
        assert venv.reset().shape[0] == 2
    finally:
        venv.close()
    assert isinstance(make_vec_env("PointReach-v0", n_envs=2, seed=0), DummyVecEnv)


@pytest.mark.maniskill
def test_a_simulator_rendering_in_the_learners_process_gets_one_torch_thread(tmp_path):
    from agents.train import TrainConfig

    # One ManiSkill env (DummyVecEnv) and the evaluation env render rgb here (platform notes: with
    # 2 threads SAC on rgb ran ~18x slower).
    cfg = TrainConfig(env="PushCube-v1", policy_obs="rgb", steps=32, n_envs=1, eval_freq=32, eval_episodes=1,
                      logdir=str(tmp_path), algo_kwargs={"n_steps": 32, "batch_size": 32})
    assert _threads_after_training(cfg) == 1


def test_reward_logger_reports_the_env_return_next_to_the_learned_one(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    from agents.callbacks import RewardLogger
    from agents.vec import make_vec_env
    from reward_wrappers.sb3 import VecLearnedReward

    venv = make_vec_env("PointReach-v0", n_envs=2, seed=0, make_kwargs={"ignore_terminations": True})
    # logit 0 everywhere: the learned reward is p = 0.5 on each of an episode's 50 steps
    venv = VecLearnedReward(venv, lambda batch: np.zeros(len(batch["state"])))
    agent = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    agent.set_logger(configure(str(tmp_path), ["csv"]))
    agent.learn(128, callback=RewardLogger())
    with open(tmp_path / "progress.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["rollout/learned_return"]) == pytest.approx(25.0)
    env_return = float(last["rollout/env_return"])  # the dense reward, recovered from info["env_reward"]
    assert env_return != pytest.approx(25.0) and np.isfinite(env_return)
    assert 0.0 <= float(last["rollout/true_success_rate"]) <= 1.0


def test_raw_progress_reward_on_episodes_that_end_on_success_warns(tmp_path):
    import warnings

    from agents.train import TrainConfig

    ckpt = tmp_path / "progress.pt"
    ckpt.write_bytes(b"")  # only its existence is checked here
    with pytest.warns(RuntimeWarning, match="hovering"):
        TrainConfig(reward=f"progress:{ckpt}", ignore_terminations=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(reward=f"progress:{ckpt}")  # auto: PointReach's episodes run their full length
        TrainConfig(reward=f"progress:{ckpt}", ignore_terminations=False, reward_output="delta")
        TrainConfig(reward="env", pbrs=str(ckpt), ignore_terminations=False)


def test_linear_learning_rate_schedule_anneals_to_zero_and_bad_names_are_rejected():
    from agents.defaults import default_hyperparameters, sb3_hyperparameters

    hyper = default_hyperparameters("ppo", "PushCube-v1")
    assert hyper["lr_schedule"] == "linear"
    lr = sb3_hyperparameters(hyper)["learning_rate"]
    assert lr(1.0) == pytest.approx(hyper["learning_rate"]) and lr(0.5) == pytest.approx(hyper["learning_rate"] / 2)
    assert lr(0.0) == 0.0
    assert sb3_hyperparameters({"learning_rate": 1e-3})["learning_rate"] == 1e-3  # constant by default
    with pytest.raises(ValueError, match="lr_schedule must be 'constant' or 'linear', got 'cosine'"):
        sb3_hyperparameters({"lr_schedule": "cosine"})


def test_demo_refinement_records_the_exploiting_agent_and_refits_the_classifier(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--conditions", "c", "--classifier-inputs", "state",
                 "--refine-steps", "1024", "--refine-rounds", "2", "--learned-gamma", "0.5"]) == 0
    for name in ("classifier_initial.pt", "classifier_round1.pt", "classifier.pt"):
        assert (out / name).stat().st_size > 0
    from collectors import load_trajectories

    rounds = [list(load_trajectories(out / "refine_data" / f"round{k}")) for k in (1, 2)]
    assert all(len(recorded) >= 1024 // 50 for recorded in rounds)  # PointReach episodes are at most 50 steps
    refinement = json.loads((out / "results.json").read_text())["classifier_refinement"]
    assert refinement["steps"] == 1024 and len(refinement["rounds"]) == 2
    for recorded, summary in zip(rounds, refinement["rounds"]):
        assert summary["recorded_episodes"] == len(recorded)
        assert summary["recorded_successes"] == sum(t.success for t in recorded)
        assert 0.0 <= summary["false_positive_rate_after"] <= 1.0 and 0.0 <= summary["false_positive_rate_before"] <= 1.0
    # Round 2 exploited round 1's refit, and each refit trained on every recording so far.
    round2 = json.loads((out / "runs" / "refine2" / "run_config.json").read_text())
    assert round2["config"]["reward"] == f"classifier:{out / 'classifier_round1.pt'}"
    counts = [json.loads((out / f"{name}.report.json").read_text())["counts"]["train_trajectories"]
              for name in ("classifier_initial", "classifier_round1", "classifier")]
    assert counts[0] < counts[1] < counts[2]
    config = json.loads((out / "runs" / "c_classifier_seed0" / "run_config.json").read_text())
    assert config["config"]["reward"] == f"classifier:{out / 'classifier.pt'}"
    assert "Refined by 2 round(s) of negative mining" in (out / "report.md").read_text()
    # --learned-gamma reaches the compared learned condition, not the mining runs (env default).
    assert config["hyperparameters"]["gamma"] == 0.5
    assert round2["hyperparameters"]["gamma"] == 0.95


def test_train_reward_cli_fits_every_kind_with_the_shared_options(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["collect", "--env", "PointReach-v0", "--episodes", "12", "--noise", "0.7", "--out", str(data),
                 "--seed", "0", "--no-progress"]) == 0
    shared = ["--data", str(data), "--inputs", "state", "--epochs", "2", "--patience", "9", "--seed", "3",
              "--val-fraction", "0.3", "--device", "cpu", "--logdir", str(tmp_path / "tb")]
    kinds = {"classifier": ["--batch-size", "16", "--window", "2", "--frame-sampling", "strided", "--stride", "3"],
             "progress": ["--batch-size", "16", "--window", "3", "--frame-sampling", "uniform"],
             "preference": ["--num-pairs", "32", "--num-val-pairs", "16", "--batch-size", "8"]}
    frames = {"classifier": (2, "strided", 3), "progress": (3, "uniform", 1), "preference": (1, "last", 1)}
    for kind, extra in kinds.items():
        out = tmp_path / f"{kind}.pt"
        assert main(["train-reward", kind, "--out", str(out), *shared, *extra]) == 0, kind
        report = json.loads((tmp_path / f"{kind}.report.json").read_text())
        assert report["seed"] == 3 and report["epochs_run"] == 2, kind
        assert report["counts"]["val_trajectories"] == 4, kind  # 30 % of 12 trajectories
        spec = load_reward_model(out).spec
        assert (spec.window, spec.sampling, spec.stride) == frames[kind], kind
    assert (tmp_path / "tb").is_dir()


@pytest.mark.parametrize("kind", ["classifier", "progress", "preference"])
@pytest.mark.parametrize("option, value, message", [("--epochs", "-1", "expected a positive integer, got -1"),
                                                    ("--batch-size", "0", "expected a positive integer, got 0"),
                                                    ("--lr", "nan", "expected a positive number"),
                                                    ("--val-fraction", "1.5", r"expected a number in \(0, 1\)")])
def test_train_reward_rejects_bad_shared_options_before_any_work(tmp_path, capsys, kind, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-reward", kind, "--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and re.search(message, err)
    assert not (tmp_path / "m.pt").exists()


def test_a_run_with_policy_kwargs_is_found_again_by_resume(tmp_path):
    from agents.compare import finished_run
    from agents.train import TrainConfig, train_agent

    kwargs = {"learning_starts": 64, "batch_size": 32, "policy_kwargs": {"net_arch": [8]}}
    cfg = TrainConfig(env="PointReach-v0", algo="sac", steps=128, n_envs=2, eval_freq=128, eval_episodes=2,
                      logdir=str(tmp_path / "run"), algo_kwargs=json.loads(json.dumps(kwargs)))
    train_agent(cfg)
    assert cfg.algo_kwargs == kwargs  # SAC adds use_sde to the policy_kwargs it gets: a copy
    assert finished_run(cfg) is not None


def test_top_level_help_imports_neither_torch_nor_sb3() -> None:
    # Before: `rewardswap --help` took 2.9 s importing every subcommand (torch, SB3, ManiSkill...).
    import subprocess
    import sys

    code = ("import sys\nfrom agents.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'mani_skill') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "train-agent" in done.stdout and done.stdout.strip().endswith("[]")


def test_a_function_potential_shapes_training_without_a_checkpoint(tmp_path):
    """``--pbrs fn:MODULE:FUNCTION``: a hand-written potential of the env's observation."""
    from agents.train import TrainConfig, train_agent

    cfg = TrainConfig(env="PointKeyDoor-v0", reward="sparse", pbrs="fn:envs.point_key_door:remaining_path_potential",
                      steps=128, n_envs=2, eval_freq=128, eval_episodes=1, logdir=str(tmp_path / "run"),
                      algo_kwargs={"n_steps": 64, "batch_size": 64})
    summary = train_agent(cfg)
    assert summary["pbrs"] == cfg.pbrs
    config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert config["config"]["pbrs"] == cfg.pbrs and config["pbrs_gamma"] == config["hyperparameters"]["gamma"]


def test_train_agent_reads_its_reward_checkpoint_once(tmp_path, monkeypatch):
    import torch

    import envs
    import reward_wrappers.models.checkpoint as checkpoint_io
    from reward_wrappers import ModelSpec, TorchRewardModel, save_reward_model

    space = envs.make("PointReach-v0").observation_space
    model = TorchRewardModel.build(ModelSpec.from_space(space, ("state",)), encoder="mlp", hidden=8)
    path = save_reward_model(model, tmp_path / "reward.pt", metadata={"env": envs.env_spec("PointReach-v0", {})})
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io.torch, "load", counting_load)
    # no --env: the env comes from the checkpoint, which the checks and the run also need
    argv = ["train-agent", "--reward", f"classifier:{path}", "--steps", "64", "--n-envs", "2", "--eval-freq", "64",
            "--eval-episodes", "1", "--algo-kwargs", '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}',
            "--logdir", str(tmp_path / "run")]
    assert main(argv) == 0
    assert reads == [str(path)]
