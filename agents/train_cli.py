"""``rewardswap train-agent``: its options and the command around :func:`agents.train.train_agent`.

Every option becomes a :class:`~agents.config.TrainConfig` field; the checks that need no env run
here, before anything is built, and an error names the option and what to do.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
from typing import Any

import torch

import envs
from agents import checkpoint
from agents.config import ALGOS, AUTO_YES_NO, OBS_CHOICES, TrainConfig, parse_reward
from agents.defaults import parse_algo_kwargs
from agents.labelling.command import add_page_arguments
from agents.preflight import check_checkpoints, check_labeller, probe_env, recorded_env_spec, reward_path
from agents.train import train_agent
from reward_wrappers import load_reward_model


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
    parser.add_argument("--reward-at", choices=["step", "episode-end"], default="step",
                        help="pay the learned reward every step, or once per episode on its last step from its final "
                             "frame (full-length episodes; a state policy then renders the reward's images only "
                             "there; refits ask about final frames; not with --pbrs)")
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


def config_from_args(args: argparse.Namespace, reward_model: Any = None) -> TrainConfig:
    """``reward_model``: the ``--reward`` checkpoint, when the caller has read it already."""
    env, env_kwargs = args.env, envs.parse_env_kwargs(args.env_kwargs)
    parse_reward(args.reward)  # an unknown kind is named before its checkpoint is read
    if env is None:  # the env the reward model was fitted on, else the default
        path = reward_path(args.reward) or args.pbrs
        if reward_model is not None:
            recorded = reward_model.metadata.get("env")
        else:
            recorded = recorded_env_spec(path) if path and pathlib.Path(path).is_file() else None
        env, env_kwargs = (recorded["id"], {**recorded.get("kwargs", {}), **env_kwargs}) if recorded else (TrainConfig.env, env_kwargs)
    return TrainConfig(
        env=env, env_kwargs=env_kwargs, max_episode_steps=args.max_episode_steps,
        render_size=args.render_size, algo=args.algo, reward=args.reward, pbrs=args.pbrs, backbone=args.backbone,
        batched_device=args.batched_device, gamma=args.gamma,
        policy_obs=args.policy_obs, steps=args.steps, seed=args.seed, n_envs=args.n_envs, logdir=args.logdir,
        collect=args.collect, ignore_terminations=AUTO_YES_NO[args.ignore_terminations],
        reward_output=args.reward_output, reward_at=args.reward_at,
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
        # The --reward checkpoint is read once: its recorded env, the checks and the run use it.
        path = parse_reward(args.reward)[1]  # an unknown kind is named before its checkpoint is read
        reward_model = load_reward_model(path) if path else None
        cfg = config_from_args(args, reward_model)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        check_checkpoints(cfg, {"--reward": reward_model})
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
    summary = train_agent(cfg, command=command, report=True, step_seconds=step_seconds, reward_model=reward_model)
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
