"""Compare the env's own reward with learned rewards on one env, one budget, several seeds.

Conditions are rewards as for ``train-agent``, optionally followed by ``+pbrs:PATH``:
``sparse``, ``env``, ``classifier:c.pt``, ``classifier:c.pt+pbrs:p.pt``, ``progress:p.pt``,
``preference:b.pt``; a trailing ``@gamma=G`` gives that condition its own discount
(``classifier:c.pt+pbrs:p.pt@gamma=0.95``), otherwise ``--gamma`` or the env's default applies.
Any other ``train-agent`` option of the refits and demonstrations may follow the same way:
``classifier:c.pt@refit-every=2000@label-budget=2000@demos=buffers`` (see ``agents.compare``).
Runs go to parallel processes (``--jobs``) or, with ``--engine ray``, to a Ray cluster
(:mod:`agents.ray_engine`: ``--address``, ``--gpus-per-run``, ``--no-shared-fs``); the output
directory receives ``results.json`` (mean and spread per condition, per-seed curves, versions),
``report.md`` and ``curves.png``.
``--resume`` reuses the runs in ``--out`` that already finished with the same settings and
continues unfinished ones from their checkpoints (:mod:`agents.checkpoint`), so the same command
continues an interrupted bench.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import os
import platform
import shlex
import sys

import envs
from agents import ray_engine
from agents.compare import CONDITION_OPTIONS, Condition, format_table, run_conditions, seeded_options
from agents.defaults import family_defaults, parse_algo_kwargs
from agents.labelling.command import add_page_arguments
from agents.preflight import check_checkpoints, check_labeller, probe_env
from agents.train import ALGOS, AUTO_YES_NO, OBS_CHOICES, TrainConfig
from agents.run_pool import RunFailed
from collectors.ray_cluster import RayUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    envs.add_env_arguments(parser, default_env="PointReach-v0")
    parser.add_argument("--algo", choices=sorted(ALGOS), default="ppo")
    parser.add_argument("--conditions", nargs="+", default=["sparse", "env"],
                        help="rewards to compare: REWARD[+pbrs:PATH][@name=value]..., name one of "
                             f"{', '.join(CONDITION_OPTIONS)} (train-agent's options)")
    parser.add_argument("--names", nargs="+", default=None, help="display names, one per condition")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--policy-obs", choices=OBS_CHOICES, default="state")
    parser.add_argument("--gamma", type=float, default=None)
    parser.add_argument("--ignore-terminations", choices=["auto", "yes", "no"], default="auto",
                        help="same dynamics for every condition; auto: episodes run their full length where the env "
                             "supports it (built-in and ManiSkill), else they end as the env says")
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--algo-kwargs", default="{}", help="JSON dict of SB3 hyperparameters overriding the defaults")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs in parallel processes (default: one per core, at most one per run); more than the "
                             "cores is capped unless --oversubscribe")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="allow more parallel runs than cores (each run then goes slower)")
    parser.add_argument("--out", default="bench_out", help="output directory")
    parser.add_argument("--resume", action="store_true",
                        help="reuse runs that already finished in --out with the same settings and continue unfinished "
                             "ones from their last checkpoint (continue an interrupted bench); without it every run is "
                             "trained afresh")
    parser.add_argument("--checkpoint-every", type=int, default=20_000, metavar="N",
                        help="each run saves a checkpoint every N env steps (what --resume continues from); 0: never")
    ray_engine.add_arguments(parser)
    add_page_arguments(parser)


def size_jobs(jobs: int | None, runs: int, base: TrainConfig, step_seconds: float | None, oversubscribe: bool,
              cores: int | None = None) -> int:
    """Parallel runs for ``runs`` runs on ``cores`` cores: one per core by default; more than the
    cores only with ``oversubscribe``; a warning when learners plus env worker processes exceed
    twice the cores (each run then crawls: 3 learners and 24 workers on 2 cores made ~200 steps/s).

    >>> size_jobs(None, 6, TrainConfig(), None, False, cores=4)
    4
    """
    cores = cores or os.cpu_count() or 1
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    chosen = min(cores, runs) if jobs is None else min(jobs, runs)
    if chosen > cores and not oversubscribe:
        print(f"rewardswap bench: --jobs {jobs} capped at {cores}, the cores this machine has "
              "(--oversubscribe to run more at once)", file=sys.stderr)
        chosen = cores
    workers = base.n_envs if family_defaults(base.algo, base.env, step_seconds=step_seconds).subprocess else 0
    processes = chosen * (1 + workers)
    if chosen > 1 and processes > 2 * cores:  # one run alone is as fast as it gets
        print(f"rewardswap bench: {chosen} parallel runs x (1 learner + {workers} env workers) = {processes} processes "
              f"on {cores} cores; each run will go slower (fewer --jobs or --n-envs keep them apart)", file=sys.stderr)
    return max(1, chosen)


def run(args: argparse.Namespace) -> int:
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        names = args.names or [None] * len(args.conditions)
        if len(names) != len(args.conditions):
            raise ValueError(f"--names has {len(names)} entries for {len(args.conditions)} conditions")
        conditions = [Condition.parse(c, n) for c, n in zip(args.conditions, names)]
        if len({c.name for c in conditions}) != len(conditions):
            raise ValueError("two conditions share a name; give --names")
        if args.engine == "ray" and any(dict(c.options).get("labeller") == "web" for c in conditions):
            raise ValueError("@labeller=web needs a person at a page on this machine; Ray runs are elsewhere: use the "
                             "local engine, or @labeller=module:callable")
        base = TrainConfig(env=args.env, env_kwargs=envs.parse_env_kwargs(args.env_kwargs),
                           max_episode_steps=args.max_episode_steps, render_size=args.render_size, algo=args.algo,
                           steps=args.steps, n_envs=args.n_envs, policy_obs=args.policy_obs,
                           gamma=args.gamma, ignore_terminations=AUTO_YES_NO[args.ignore_terminations],
                           eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
                           algo_kwargs=parse_algo_kwargs(args.algo_kwargs), label_host=args.label_host,
                           label_port=args.label_port, checkpoint_every=args.checkpoint_every or None)
        for c in conditions:  # every path and option before any run; each seed's @init-from= exists (TrainConfig)
            cfgs = [replace(base, reward=c.reward, pbrs=c.pbrs, seed=s, **seeded_options(c.options, s))
                    for s in range(args.seeds)]
            check_checkpoints(cfgs[0])  # the same reward checkpoints for every seed: read once
            check_labeller(cfgs[0])
        step_seconds = probe_env(base)  # bad constructor arguments fail here, once, not in every run's process
        grid = ray_engine.grid_from_args(args)
        if grid is None:
            jobs = size_jobs(args.jobs, len(conditions) * args.seeds, base, step_seconds, args.oversubscribe)
        else:
            if args.jobs is not None:
                print("rewardswap bench: --jobs is not used with --engine ray: each run is a task declaring one CPU, "
                      "and the cluster's CPUs decide how many run at once", file=sys.stderr)
            jobs = 1
    except (ValueError, FileNotFoundError, RayUnavailableError) as exc:
        print(f"rewardswap bench: error: {exc}", file=sys.stderr)
        return 2
    extra = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "engine": args.engine,
    }
    try:
        summary = run_conditions(conditions, base, list(range(args.seeds)), args.out, jobs=jobs, extra=extra,
                                 preamble=f"Command: `{extra['command']}`\n\n", resume=args.resume,
                                 step_seconds=step_seconds, ray=grid)
    except RayUnavailableError as exc:
        print(f"rewardswap bench: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"rewardswap bench: error: {exc}\nthe runs that finished are in {args.out}/runs: the same command with "
              "--resume reuses them and continues the others from their checkpoints", file=sys.stderr)
        return 1
    print(format_table(summary))
    print(f"report: {args.out}/report.md")
    return 0
