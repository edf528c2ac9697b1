"""Train an SB3 agent (PPO or SAC, unmodified) on the env reward or a learned reward.

The env is built with ``envs.make``; the reward wrappers are stacked at the vector level (one
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

import argparse
import copy
import dataclasses
import json
import pathlib
import platform
import shlex
import sys
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
from agents.defaults import family_defaults, parse_algo_kwargs, sb3_hyperparameters
from agents.labelling.command import add_page_arguments
from agents.preflight import check_checkpoints, check_labeller, load_pbrs, probe_env, recorded_env_spec, reward_path
from agents.vec import VecKeepKeys
from agents.warm_start import NORMALIZATION_FILE, resolve_source, save_normalization, warm_start
from reward_wrappers import load_reward_model
from reward_wrappers.base import RewardModel, SwappableModel
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
                step_seconds: float | None = None) -> dict[str, Any]:
    """Run one training job; return a summary (final true success, curve, timings).
    ``step_seconds``: :func:`probe_env`'s figure when the caller measured it already."""
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
    live = SwappableModel(load_reward_model(path)) if path else None  # a refit swaps its network
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
        venv = reward_kind(kind).serve(venv, reward_model, cfg.reward_output)  # the kind's wrapper (trainers.kinds)
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
    eval_kwargs = {**make_kwargs, "obs": cfg.policy_obs}
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
    if source is not None:  # the seed's Stage 3 -> 4: continue a pre-trained agent on this run's reward
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    envs.add_env_arguments(parser, default_env=None,
                           default_text=f"the env the reward checkpoint records, else {TrainConfig.env}")
    parser.add_argument("--algo", choices=sorted(ALGOS), default="ppo")
    parser.add_argument("--reward", default="env",
                        help="env | sparse | KIND:PATH, KIND a registered reward-model kind (classifier, progress, "
                             "preference or one a package adds)")
    parser.add_argument("--pbrs", default=None, metavar="PATH|fn:MODULE:FUNCTION",
                        help="add PBRS with this model as the potential, or a function f(frames) -> (B,) of the "
                             "env's observation (e.g. a hand-written distance: the ceiling a learned potential can reach)")
    parser.add_argument("--pbrs-scale", type=float, default=1.0, metavar="K",
                        help="the potential is K times the model's (a [0, 1] potential is small beside a sparse "
                             "return of up to 1 / (1 - gamma); any K > 0 keeps the optimal policy)")
    parser.add_argument("--pbrs-offset", type=float, default=0.0, metavar="C",
                        help="Phi = K * (potential + C). Phi is 0 on termination, so with a [0, 1] progress "
                             "potential on an env that terminates on success, C = -1 makes Phi about 0 at the "
                             "goal and finishing no longer gives back the potential; keeps the optimal policy")
    parser.add_argument("--process-goal", default=None, metavar="SOURCE",
                        help="a process-reward potential's goal: obs:KEY, info:KEY, fn:MODULE:FUNCTION (e.g. "
                             "fn:envs.point_key_door:goal_state) or frame:FILE.npy (goal features)")
    parser.add_argument("--process-override", default="{}", metavar="JSON", help="its FusionOverride fields, e.g. "
                        "'{\"gating\": \"threshold\", \"risk_tolerance\": 0.2, \"temperature\": 0.5}'")
    parser.add_argument("--batched-device", default=None, metavar="DEVICE",
                        help="step the --n-envs envs as one torch-batched env on DEVICE (cpu, cuda); PointReach-v0 or "
                             "PointKeyDoor-v0 (state observations), e.g. --n-envs 1024 --batched-device cpu")
    parser.add_argument("--backbone", default=None, metavar="SOURCE",
                        help="backbone for reward models fitted on `rewardswap embed` embeddings (default: the source their "
                             "checkpoint records; a backbone with other weights is refused; unused when no model reads "
                             "an embedding)")
    parser.add_argument("--gamma", type=float, default=None, help="agent discount (also PBRS's); default: per-algo/env")
    parser.add_argument("--policy-obs", choices=OBS_CHOICES, default="state", help="what the policy sees")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps to train for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--logdir", default="runs/agent", help="run directory (TensorBoard, model, config)")
    parser.add_argument("--collect", default=None, metavar="DIR", help="record training trajectories into DIR")
    parser.add_argument("--ignore-terminations", choices=["auto", "yes", "no"], default="auto",
                        help="keep episodes running after true success; auto: yes where the env supports it "
                             "(built-in and ManiSkill), for every reward")
    parser.add_argument("--reward-output", default=None, choices=["prob", "binary", "logit", "raw", "progress", "delta"],
                        help="how the learned model's output becomes a reward (default per kind)")
    parser.add_argument("--normalize-obs", choices=["auto", "yes", "no"], default="auto",
                        help="running mean/std normalisation of the policy's state observations; auto: per env family "
                             "(ManiSkill yes, others no; run_config.json says why)")
    parser.add_argument("--init-from", default=None, metavar="RUN_DIR|MODEL.zip",
                        help="start from a previous run's agent (weights, optimisers, observation statistics; read as "
                             "tensors and arrays, never unpickled): e.g. pre-train on the dense reward, then continue "
                             "on a learned one; the algorithm, observation and action spaces must match")
    parser.add_argument("--checkpoint-every", type=int, default=20_000, metavar="N",
                        help="save the run every N env steps into LOGDIR/checkpoint (model, optimisers, replay buffer, "
                             "refits, monitor; atomic), removed when the run finishes; 0: never")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --logdir from its last checkpoint (same settings, else refused)")
    parser.add_argument("--eval-freq", type=int, default=5_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--algo-kwargs", default="{}", metavar="JSON",
                        help="SB3 hyperparameters overriding the per-algo/env defaults, e.g. '{\"n_epochs\": 4}'")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads for the learner (default: torch's, one per core; always 1 when a "
                             "simulator renders images in this process); give 1 to each of several train-agent "
                             "processes running at once, or they fight for the cores")
    group = parser.add_argument_group("keeping a learned reward honest (HIL-SERL's recipe)")
    group.add_argument("--no-monitor", dest="monitor", action="store_false",
                       help="turn off the reward monitor; monitor=True means it is on whenever a reward model pays the "
                            "agent and the env reports success: learned vs true success on the training frames, "
                            "reward_monitor/* in TensorBoard, reward_monitor.json")
    group.add_argument("--monitor-min-precision", type=float, default=0.9,
                       help="warn once when the learned success decision's precision over recent frames falls below this")
    group.add_argument("--refit-every", type=int, default=None, metavar="N",
                       help="every N env steps, label frames of the agent's recent rollouts (those the classifier calls "
                            "successes plus a sample of the rest; the env's success flag stands in for a human) and "
                            "fine-tune the classifier on its buffers plus every label so far")
    group.add_argument("--label-budget", type=int, default=0, metavar="L", help="labels the refits may spend in all")
    group.add_argument("--labeller", default="env", metavar="SOURCE",
                       help="who answers the refits' questions: env (the env's success flag stands in for a person; "
                            "refused where the env reports none), web (a person on a local page; the run never waits), "
                            "or module:callable (callable(frames) -> True/False/None per frame). Each answer is one "
                            "label; answers persist in LOGDIR/labels and a run restarted there reuses them")
    add_page_arguments(group)
    group.add_argument("--label-render", action="store_true",
                       help="keep the env's rendered frame of each queried state for the page, for state-only reward "
                            "models (the env then renders every step: a ManiSkill 64x64 camera costs ~30 ms a step on a CPU)")
    group.add_argument("--agent-frames", choices=["unlabelled", "off"], default="unlabelled",
                       help="unlabelled: each refit also reads the agent's recent frames as unlabelled data (a "
                            "positive-unlabelled loss whose prior the uniform answers estimate), so a few "
                            "demonstrations and answers suffice and true successes stay paid; off: answers and "
                            "recorded buffers only")
    group.add_argument("--refit-epochs", type=int, default=3, help="fine-tuning epochs per refit")
    group.add_argument("--refit-precision", type=float, default=0.95,
                       help="a refit's threshold is raised, where needed, until its held-out precision reaches this")
    group.add_argument("--refit-data", default=None, metavar="DIR",
                       help="the classifier's original buffers; None: the directory its checkpoint names")
    group.add_argument("--demos", default=None, metavar="DIR",
                       help="SAC: successful trajectories of DIR in the replay buffer, rewards from the current reward "
                            "model (--reward env: the recorded ones, when meta.json says they are this env's reward)")
    group.add_argument("--demo-ratio", type=float, default=0.5, help="share of each SAC batch drawn from --demos")
    parser.add_argument("-v", "--verbose", type=int, default=0)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    env, env_kwargs = args.env, envs.parse_env_kwargs(args.env_kwargs)
    parse_reward(args.reward)  # an unknown kind is named before its checkpoint is read
    if env is None:  # the env the reward model was fitted on, else the default
        path = reward_path(args.reward) or args.pbrs
        recorded = recorded_env_spec(path) if path and pathlib.Path(path).is_file() else None
        env, env_kwargs = (recorded["id"], {**recorded.get("kwargs", {}), **env_kwargs}) if recorded else (TrainConfig.env, env_kwargs)
    return TrainConfig(
        env=env, env_kwargs=env_kwargs, max_episode_steps=args.max_episode_steps,
        render_size=args.render_size, algo=args.algo, reward=args.reward, pbrs=args.pbrs, backbone=args.backbone,
        batched_device=args.batched_device, gamma=args.gamma,
        policy_obs=args.policy_obs, steps=args.steps, seed=args.seed, n_envs=args.n_envs, logdir=args.logdir,
        collect=args.collect, ignore_terminations=AUTO_YES_NO[args.ignore_terminations],
        reward_output=args.reward_output,
        normalize_obs=AUTO_YES_NO[args.normalize_obs],
        eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, verbose=args.verbose,
        algo_kwargs=parse_algo_kwargs(args.algo_kwargs), monitor=args.monitor,
        monitor_min_precision=args.monitor_min_precision, refit_every=args.refit_every, label_budget=args.label_budget,
        refit_epochs=args.refit_epochs, refit_precision=args.refit_precision, refit_data=args.refit_data,
        labeller=args.labeller, agent_frames=args.agent_frames, label_host=args.label_host, label_port=args.label_port, label_render=args.label_render,
        demos=args.demos, demo_ratio=args.demo_ratio, process_goal=args.process_goal,
        pbrs_scale=args.pbrs_scale, pbrs_offset=args.pbrs_offset, process_override=json.loads(args.process_override),
        init_from=args.init_from, checkpoint_every=args.checkpoint_every or None, resume=args.resume,
    )


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        check_checkpoints(cfg)
        if cfg.resume:
            checkpoint.check_resumable(pathlib.Path(cfg.logdir), cfg)
        step_seconds = probe_env(cfg)
        check_labeller(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rewardswap train-agent: error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = "rewardswap " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"training {cfg.algo.upper()} on {cfg.env} with reward {cfg.reward}"
          f"{' + PBRS(' + cfg.pbrs + ')' if cfg.pbrs else ''} for {cfg.steps} steps; deterministic evaluation on true success:")
    summary = train_agent(cfg, command=command, report=True, step_seconds=step_seconds)
    if summary["monitor"] is not None and summary["monitor"]["final"] is not None:
        final = summary["monitor"]["final"]
        print(f"reward monitor: precision {final['precision']}  recall {final['recall']} over the last "
              f"{int(final['frames'])} training frames")
    labels = summary["labels"]
    print(f"labels used {labels['total']}: {labels['trajectory_marks']} trajectory marks + {labels['queries']} answered "
          f"queries" + (f" ({labels['source']}, budget {labels['budget']})" if "source" in labels else ""))
    final = summary["curve"][-1]
    success = (f"final true success {summary['final_true_success']:.2f}  steps to 80%: {summary['steps_to_80']}"
               if final.get("reports_success", True) else
               f"final env return {final['env_return']:.2f} (the env reports no success flag)")
    print(f"{success}  "
          f"wall {summary['wall_seconds']:.0f}s  reward inference {100 * summary['reward_inference_share']:.1f}%  "
          f"-> {cfg.logdir}")
    return 0
