"""Train an SB3 agent (PPO or SAC, unmodified) on the env reward or a learned reward.

The command-line layer (options, checks before any work) is :mod:`agents.train_cli`. The env is
built with ``envs.make``; the reward wrappers are stacked at the vector level (one
batched model forward per step); TensorBoard gets the true success rate, the env's return and the
learned return side by side; periodic deterministic evaluation measures true success. The run
directory receives ``model.zip``, ``run_config.json`` (everything needed to reproduce the run,
including the exact command) and ``eval.json`` (the evaluation curve).

Reward choices (``--reward``): ``env`` (the env's dense reward), ``sparse`` (1 on true-success
steps), ``classifier:PATH``, ``progress:PATH``, ``preference:PATH`` (checkpoints written by
``rewardswap train-reward``). ``--pbrs PATH`` adds potential-based shaping with that model as the
potential, using the agent's own discount; a process-reward model (``train-reward process``) needs
``--process-goal``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import platform
import time
from typing import Any

import torch
from stable_baselines3.common.vec_env import VecEnv, VecExtractDictObs, VecNormalize

import envs
from agents import checkpoint, correction
from agents.callbacks import RewardLogger, StopOnSignal, TimedModel, TrueSuccessEval
from agents.config import (  # noqa: F401 - re-exported: callers import them from here
    ALGOS, AUTO_YES_NO, OBS_CHOICES, TrainConfig, check_discount, parse_reward,
    resolve_ignore_terminations,
)
from agents.defaults import family_defaults, sb3_hyperparameters
from agents.preflight import check_checkpoints, load_pbrs, probe_env
from agents.vec import VecKeepKeys
from agents.warm_start import NORMALIZATION_FILE, resolve_source, save_normalization, warm_start
from reward_wrappers import load_reward_model
from reward_wrappers.models.base import RewardModel, SwappableModel
from reward_wrappers.embedding import embedding_inputs, vec_embed_for
from trainers.kinds import reward_kind


def _required_obs(policy_obs: str, models: list[RewardModel], label_render: bool = False) -> str:
    keys = set(policy_obs.split("+")) | ({"rgb"} if label_render else set())
    embedded = embedding_inputs(models)
    for model in models:  # a function potential has no spec: it reads the policy's keys
        keys |= set(model.spec.inputs if model.spec is not None else ()) - set(embedded)
    if embedded:  # computed online from their image key (reward_wrappers.embedding), in a Dict observation
        keys |= {"state", *(record.get("from", "rgb") for record in embedded.values())}
    unknown = keys - {"state", "rgb"}
    if unknown:
        raise ValueError(f"reward models read keys {sorted(unknown)}; envs.make provides only 'state' and 'rgb'")
    return "state+rgb" if keys == {"state", "rgb"} else keys.pop()


def renders_in_learner_process(env_id: str, env_obs: str, policy_obs: str, n_envs: int) -> bool:
    """Whether a non-built-in env renders images in this process (where the learner's torch runs).

    ``make_vec_env`` steps one ManiSkill (or other simulator) env in this process, and evaluation
    always uses one; built-in envs draw with numpy and are not affected.

    >>> renders_in_learner_process("PushCube-v1", "state+rgb", "state", n_envs=8)
    False
    >>> renders_in_learner_process("PushCube-v1", "state+rgb", "state", n_envs=1)
    True
    """
    if env_id in envs.BUILTIN_ENV_IDS:
        return False
    training_renders_here = n_envs == 1 and "rgb" in env_obs.split("+")
    return training_renders_here or "rgb" in policy_obs.split("+")


def _select_policy_keys(venv: VecEnv, env_obs: str, policy_obs: str) -> VecEnv:
    """Show the policy only its keys (the reward wrappers below still see everything, embeddings included)."""
    if "+" in policy_obs:
        keys = tuple(policy_obs.split("+"))
        return venv if tuple(venv.observation_space.spaces) == keys else VecKeepKeys(venv, keys)  # type: ignore[attr-defined]
    if env_obs == policy_obs:
        return venv
    return VecExtractDictObs(venv, policy_obs)


def train_agent(cfg: TrainConfig, command: str | None = None, report: bool = False,
                step_seconds: float | None = None, reward_model: Any = None) -> dict[str, Any]:
    """Run one training job; return a summary (final true success, curve, timings).
    ``step_seconds``: :func:`probe_env`'s figure, ``reward_model``: the ``--reward`` checkpoint,
    when the caller has them already."""
    from agents.batched_vec import make_batched_vec_env
    from agents.vec import make_vec_env
    from reward_wrappers.sb3 import VecPBRS

    torch.manual_seed(cfg.seed)
    run_dir = pathlib.Path(cfg.logdir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = checkpoint.check_resumable(run_dir, cfg) if cfg.resume else None  # before any work
    if resume_from is None and cfg.checkpoint_every is not None:
        checkpoint.remove_checkpoints(run_dir)  # a new run: nothing stale to resume from
        checkpoint.write_config(run_dir, cfg)
    kind, path = parse_reward(cfg.reward)
    live = SwappableModel(reward_model or load_reward_model(path)) if path else None  # a refit swaps its network
    reward_model = TimedModel(live) if live is not None else None
    potential = TimedModel(load_pbrs(cfg)) if cfg.pbrs else None
    check_checkpoints(cfg, {"--reward": live, "--pbrs": potential})
    models = [m for m in (reward_model, potential) if m is not None]
    env_obs = _required_obs(cfg.policy_obs, models, cfg.label_render and cfg.refit_every is not None)
    if renders_in_learner_process(cfg.env, env_obs, cfg.policy_obs, cfg.n_envs):
        # Software rendering and torch's intra-op threads fight for the cores: with 2 threads SAC
        # on rgb ran ~18x slower (platform notes).
        torch.set_num_threads(1)
    # Full-length episodes for every reward where the env allows it (as bench and demo run them):
    # a learned reward must not receive the true success through termination (platform notes),
    # and ending on success turns success into a loss for shaped env rewards: PushCube's
    # normalized_dense pays ~0.5 per step just outside the goal (~2.5 at gamma 0.8, ~10 at 0.95) and
    # 1 once on success (benchmarks/results/README.md).
    ignore_terminations = resolve_ignore_terminations(cfg.env, cfg.ignore_terminations)
    make_kwargs = dict(obs=env_obs, reward="sparse" if kind == "sparse" else "dense", render_size=cfg.render_size,
                       ignore_terminations=ignore_terminations, max_episode_steps=cfg.max_episode_steps,
                       **cfg.env_kwargs)
    if cfg.reward_at == "episode-end" and env_obs == "state+rgb" and cfg.policy_obs == "state":
        make_kwargs["render_at"] = "episode-end"  # the reward reads each episode's final frame alone
    probe = step_seconds if step_seconds is not None else probe_env(cfg)
    defaults = family_defaults(cfg.algo, cfg.env, step_seconds=probe, n_envs=cfg.n_envs)

    hyper = {**defaults.hyperparameters, **cfg.algo_kwargs}
    if cfg.algo == "sac" and "rgb" in env_obs.split("+") and "buffer_size" not in hyper:
        hyper["buffer_size"] = 100_000  # SB3's 1M would need ~12 GB for 64x64 images
    if cfg.algo == "ppo" and "batch_size" not in cfg.algo_kwargs and {"batch_size", "n_steps"} <= hyper.keys():
        # The default minibatch must fit in one rollout (n_steps x n_envs); with fewer envs SB3 would
        # otherwise train on one truncated minibatch per epoch.
        hyper["batch_size"] = min(hyper["batch_size"], hyper["n_steps"] * cfg.n_envs)
    if cfg.gamma is not None:
        hyper["gamma"] = cfg.gamma
    gamma = float(hyper.get("gamma", 0.99))
    # A copy: SB3 writes into nested dicts (policy_kwargs gets use_sde), which would change what
    # run_config.json records and so what --resume compares.
    sb3_kwargs = copy.deepcopy(sb3_hyperparameters(hyper))

    if cfg.batched_device is not None:  # one torch-batched env for all n_envs (agents/batched_vec.py)
        venv = make_batched_vec_env(cfg.env, n_envs=cfg.n_envs, seed=cfg.seed, device=cfg.batched_device, obs=env_obs,
                                    reward=make_kwargs["reward"], max_episode_steps=cfg.max_episode_steps,
                                    ignore_terminations=ignore_terminations, env_kwargs=cfg.env_kwargs)
    else:
        venv = make_vec_env(cfg.env, n_envs=cfg.n_envs, seed=cfg.seed, make_kwargs=make_kwargs,
                            collect_dir=cfg.collect, info_keys=(), subprocess=defaults.subprocess and cfg.n_envs > 1)
    venv = vec_embed_for(venv, models, cfg.backbone)  # embedding inputs, computed by the backbone they were fitted on
    venv, frames = correction.frame_store(venv, cfg, models)  # what the models read, for refits and replay
    if reward_model is not None:
        paid_at = {"reward_at": cfg.reward_at} if cfg.reward_at != "step" else {}
        venv = reward_kind(kind).serve(venv, reward_model, cfg.reward_output, **paid_at)  # the kind's wrapper (trainers.kinds)
    pbrs_gamma = None
    if potential is not None:
        venv = VecPBRS(venv, potential, gamma=gamma, scale=cfg.pbrs_scale, offset=cfg.pbrs_offset)
        pbrs_gamma = venv.gamma  # the agent's own (reward-semantics notes); run_config.json shows both
    venv = _select_policy_keys(venv, env_obs, cfg.policy_obs)
    # Running mean/std of the policy's state observations: ManiSkill states mix joint angles,
    # velocities and positions of very different scales. Above the reward wrappers, so models see
    # raw observations; images are left as uint8 so SB3 still gives them a CNN.
    normalize = defaults.normalize_obs if cfg.normalize_obs is None else cfg.normalize_obs
    normalize = normalize and "state" in cfg.policy_obs.split("+")
    norm_kwargs = dict(norm_obs=True, norm_reward=False, gamma=gamma,
                       norm_obs_keys=["state"] if "+" in cfg.policy_obs else None)
    if normalize:
        venv = VecNormalize(venv, **norm_kwargs)

    # Evaluation needs only what the policy sees: no reward model, so no extra rendering.
    eval_kwargs = {**{k: v for k, v in make_kwargs.items() if k != "render_at"}, "obs": cfg.policy_obs}
    eval_env = make_vec_env(cfg.env, n_envs=1 if defaults.subprocess else min(cfg.n_envs, 4),
                            seed=cfg.seed + 10_000, make_kwargs=eval_kwargs, subprocess=False)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, **norm_kwargs)

    if cfg.algo == "sac" and frames is not None:
        sb3_kwargs.update(correction.replay_kwargs(cfg, venv, frames))
    policy = "MultiInputPolicy" if "+" in cfg.policy_obs else ("CnnPolicy" if cfg.policy_obs == "rgb" else "MlpPolicy")
    agent = ALGOS[cfg.algo](policy, venv, seed=cfg.seed, verbose=cfg.verbose, device="cpu",
                            tensorboard_log=str(run_dir / "tb"), **sb3_kwargs)
    # The buffer is built; its kwargs (the frame store, the reward models) must not be pickled into model.zip.
    agent.replay_buffer_kwargs = {}
    source = resolve_source(cfg.init_from) if cfg.init_from is not None else None
    if source is not None and resume_from is None:  # the seed's Stage 3 -> 4 (a resumed run loads its checkpoint)
        warm_start(agent, source, cfg.algo, venv if normalize else None)
    frame_memory = getattr(agent.replay_buffer, "frame_memory_bytes", 0) if cfg.algo == "sac" else 0
    if frame_memory and report:
        print(f"the replay buffer keeps the reward models' inputs of every transition for relabelling: "
              f"{frame_memory / 2**20:.0f} MiB at most (committed as transitions arrive)")
    evaluator = TrueSuccessEval(eval_env, cfg.eval_freq, cfg.eval_episodes, seed=cfg.seed + 10_000, report=report)
    account = correction.label_account(cfg, live, potential.model if potential is not None else None)
    extra, monitor, refit, page = correction.callbacks(cfg, frames, live, run_dir, has_reward_model=bool(models),
                                                       account=account, verbose=1 if report else 0)
    stop = StopOnSignal()
    parts = {"eval": evaluator, "monitor": monitor, "refit": refit}
    wall_before = 0.0
    if resume_from is not None:  # the agent, its buffer, statistics and every part as they were saved
        wall_before = checkpoint.restore(resume_from, agent, cfg.algo, venv if normalize else None, parts,
                                         models)["wall_seconds"]
        if report:
            print(f"resuming {run_dir} at step {agent.num_timesteps} of {cfg.steps}", flush=True)
    saver = None if cfg.checkpoint_every is None else checkpoint.RunCheckpoint(
        run_dir, cfg.checkpoint_every, parts, venv if normalize else None, models, wall_before)
    start = time.perf_counter()
    try:
        agent.learn(total_timesteps=cfg.steps - agent.num_timesteps, reset_num_timesteps=resume_from is None,
                    callback=[RewardLogger(), *extra, evaluator, stop, *([saver] if saver else [])], tb_log_name="run",
                    progress_bar=False)
    finally:
        stop.restore()
        if page is not None:
            page.close()
    wall = wall_before + time.perf_counter() - start
    inference = sum(m.seconds for m in models)

    agent.save(run_dir / "model.zip")
    if normalize:
        venv.save(str(run_dir / "vecnormalize.pkl"))
        save_normalization(venv, run_dir / NORMALIZATION_FILE)  # plain arrays: what --init-from reads
    curve = evaluator.curve
    summary = {
        "env": cfg.env,
        "algo": cfg.algo,
        "reward": cfg.reward,
        "pbrs": cfg.pbrs,
        "seed": cfg.seed,
        "gamma": gamma,
        "final_true_success": curve[-1]["success_rate"],
        "steps_to_80": next((c["steps"] for c in curve if c["success_rate"] >= 0.8), None),
        "wall_seconds": wall,
        "eval_seconds": evaluator.eval_seconds,
        "reward_inference_seconds": inference,
        "reward_inference_share": inference / wall if wall > 0 else 0.0,
        "curve": curve,
        "monitor": None if monitor is None else monitor.report(),
        "labels_used": account.used,  # every label: trajectory marks (each once) plus answered queries
        "labels": account.summary(),
        "stopped_by_signal": stop.received,
        "refits": [] if refit is None else refit.records,
        "refit_seconds": 0.0 if refit is None else refit.seconds,
        "relabel_frame_memory_bytes": frame_memory,
        "demo_transitions": len(getattr(agent.replay_buffer, "demos", None) or ()) if cfg.algo == "sac" else 0,
    }
    (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "run_config.json").write_text(json.dumps({
        "config": dataclasses.asdict(cfg),
        "hyperparameters": hyper,
        "defaults": {"family": defaults.family, **defaults.reasons},
        "pbrs_gamma": pbrs_gamma,
        "labels": account.summary(),
        "env_obs": env_obs,
        "ignore_terminations": ignore_terminations,
        "normalize_obs": normalize,
        "init_from": None if source is None else source.record(),
        "command": command,
        "versions": package_versions(),
        "platform": platform.platform(),
    }, indent=2, default=str) + "\n")
    if saver is not None:
        if stop.received:
            saver.save()  # stopped by a signal: --resume continues from this step
        else:
            checkpoint.remove_checkpoints(run_dir)  # eval.json marks the run finished; its checkpoint has served
    venv.close()
    eval_env.close()
    return summary


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("rewardswap", "torch", "gymnasium", "stable-baselines3", "numpy", "mani_skill", "sapien"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
