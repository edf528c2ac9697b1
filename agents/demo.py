"""The end-to-end demo: collect, fit, swap the reward, train, compare (default: PointReach-v0).

Any env with a scripted expert works (``--env PushCube-v1 --classifier-inputs state``).
Steps (each prints progress):

1. roll out the scripted expert and write ``expert.gif``;
2. collect trajectories (expert at mixed noise, plus random actions) into ``data/``;
3. fit a success classifier (default: on the camera image) and a progress model on the state
   (``--progress-failure-fraction`` also trains it on failed episodes, as progress 0); with
   ``--refine-steps N``, negative mining (``--refine-rounds K`` rounds, default 1): PPO exploits
   the classifier for N steps while recorded, and the classifier is refitted on the data plus
   every recording so far;
4. train PPO under up to five rewards on the same budget: (a) sparse env reward, (b) dense env reward,
   (c) learned classifier, (d) learned classifier + PBRS on learned progress, (e) learned
   progress; the policy sees the state, learned rewards see what their model was fitted on;
5. write ``report.md``, ``curves.png`` (true success vs env steps) and ``results.json``.

Every condition is evaluated on the env's *true* success flag, whatever it was trained on.
Step 4's runs go to ``--jobs`` processes or, with ``--engine ray``, to a Ray cluster
(:mod:`agents.ray_engine`); steps 1-3 run here.
"""

from __future__ import annotations

import argparse
import json
import sys
import pathlib
import time
from typing import Any

import numpy as np

import envs
from agents import ray_engine
from agents.compare import Condition, format_table, run_conditions
from agents.train import TrainConfig, check_discount, train_agent
from collectors.ray_cluster import RayUnavailableError

#: The compared rewards, by letter (see the module docstring).
CONDITION_LETTERS = ("a", "b", "c", "d", "e")

#: Noise levels the expert cycles through while collecting; None means uniformly random actions.
#: Per env, so that both successes and near-miss failures are common (see ARCHITECTURE.md).
COLLECT_NOISE: dict[str, tuple[float | None, ...]] = {
    "PickCube-v1": (0.0, 0.0, 0.0, 0.05, 0.1, 0.2, None),
    "PushCube-v1": (0.0, 0.0, 0.1, 0.3, 0.5, 0.7, None),
}
DEFAULT_COLLECT_NOISE: tuple[float | None, ...] = (0.0, 0.0, 0.2, 0.4, 0.6, 0.8, None)


def write_expert_gif(env_id: str, path: pathlib.Path, seed: int, episodes: int = 2, render_size: int = 128,
                     env_kwargs: dict[str, Any] | None = None) -> pathlib.Path:
    import imageio.v2 as imageio

    env = envs.make(env_id, obs="rgb", render_size=render_size, seed=seed, **(env_kwargs or {}))
    policy = envs.expert_policy(env, seed=seed)
    frames = []
    for _ in range(episodes):
        obs, info = env.reset()
        frames.append(obs)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            frames.append(obs)
            done = terminated or truncated
    env.close()
    imageio.mimsave(path, frames, duration=0.05, loop=0)
    return path


def collect_mixed(
    env_id: str, out: pathlib.Path, episodes: int, seed: int, *, obs: str = "state+rgb", render_size: int = 64,
    info_keys: tuple[str, ...] | None = None, noise_levels: tuple[float | None, ...] | None = None,
    ignore_terminations: bool = True, progress: bool = True, make_kwargs: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Record ``episodes`` episodes, cycling the expert's noise (default: COLLECT_NOISE for the env).

    With ``ignore_terminations`` (the default) episodes run their full length, so successful ones
    hold many success frames (what a classifier needs). ``make_kwargs`` go to ``envs.make``.
    """
    from tqdm.auto import tqdm

    from collectors import TrajectoryRecorder
    from collectors.rollout import record_episodes

    if info_keys is None:
        info_keys = {"PointKeyDoor-v0": ("has_key",), "PickCube-v1": ("is_grasped",)}.get(env_id, ())
    if noise_levels is None:
        noise_levels = COLLECT_NOISE.get(env_id, DEFAULT_COLLECT_NOISE)
    made = envs.make(env_id, obs=obs, render_size=render_size, seed=seed, ignore_terminations=ignore_terminations,
                     **(make_kwargs or {}))
    spec = envs.env_spec(env_id, make_kwargs, render_size=render_size)
    recorder = TrajectoryRecorder(made, out, info_keys=info_keys, metadata={"env": spec})

    def policy_for(episode: int):
        noise = noise_levels[episode % len(noise_levels)]
        return envs.expert_policy(recorder, noise=1.0 if noise is None else noise, seed=seed + episode)

    bar = tqdm(total=episodes, desc="collect", unit="ep", disable=None if progress else True)  # None: off when not a tty
    try:
        steps = record_episodes(recorder, policy_for, range(episodes), seed=seed, on_episode=lambda *_: bar.update(1))
    finally:
        recorder.close()
        bar.close()
    return {"positive": recorder.stats.written["positive"], "negative": recorder.stats.written["negative"], "frames": steps}


def run_demo(
    out: str | pathlib.Path = "demo_out",
    *,
    env_id: str = "PointReach-v0",
    episodes: int = 200,
    classifier_inputs: tuple[str, ...] = ("rgb",),
    classifier_epochs: int = 4,
    progress_epochs: int = 20,
    progress_failure_fraction: float = 0.0,
    refine_steps: int = 0,
    refine_rounds: int = 1,
    steps: int = 64_000,
    seeds: tuple[int, ...] = (0,),
    n_envs: int = 8,
    eval_freq: int = 8_000,
    eval_episodes: int = 20,
    conditions: tuple[str, ...] = tuple(CONDITION_LETTERS),
    jobs: int = 1,
    learned_gamma: float | None = None,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    ray: ray_engine.RayGrid | None = None,
) -> dict[str, Any]:
    """Run the demo (see the module docstring); ``conditions`` picks among a-e; ``ray``: step 4 on Ray.

    ``learned_gamma`` is the agent discount (and PBRS gamma) of the learned-reward conditions c-e;
    ``None`` keeps the env's default (PPO: 0.95), as for a and b. PBRS needs a long enough horizon:
    on PushCube it learned at 0.95 and not at 0.8 (``benchmarks/results/README.md``).
    """
    from trainers import fit_classifier, fit_progress
    from trainers.common import report_path

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say = print if progress else (lambda *a, **k: None)

    env_kwargs = dict(env_kwargs or {})
    say(f"[1/5] expert rollout -> {write_expert_gif(env_id, out / 'expert.gif', seed=seeds[0], env_kwargs=env_kwargs)}")
    say(f"[2/5] collecting {episodes} episodes on {env_id} (expert at mixed noise + random)")
    # Render only when a model needs pixels: ManiSkill renders ~15x slower than it simulates.
    collect_obs = "state+rgb" if "rgb" in classifier_inputs else "state"
    counts = collect_mixed(env_id, out / "data", episodes, seed=seeds[0], obs=collect_obs, progress=progress,
                           make_kwargs=env_kwargs)
    say(f"      {counts['positive']} successful, {counts['negative']} failed, {counts['frames']} frames")

    say(f"[3/5] fitting a success classifier on {'+'.join(classifier_inputs)} and a progress model on state")
    classifier = fit_classifier(out / "data", out / "classifier.pt", inputs=classifier_inputs, epochs=classifier_epochs,
                                seed=seeds[0], logdir=out / "tb" / "classifier", progress=progress)
    clf_report = json.loads(report_path(classifier, ".report.json").read_text())
    # With a failure fraction, failed episodes teach the progress model that aimless motion is
    # no progress (a demos-only model scored PushCube wandering by elapsed time). Off by default:
    # on PointReach it lowered (e), the raw progress reward, from 0.95 to 0.70 (3 seeds).
    progress_model = fit_progress(out / "data", out / "progress.pt", inputs=("state",), epochs=progress_epochs,
                                  failure_fraction=progress_failure_fraction, seed=seeds[0], logdir=out / "tb" / "progress",
                                  progress=progress)
    prog_report_path = report_path(progress_model, ".report.json")
    prog_report = json.loads(prog_report_path.read_text())
    say(f"      classifier val AUC {clf_report['val_auc']:.3f}; progress report {prog_report_path}")

    # Same dynamics for every condition: episodes run their full length, so no condition
    # learns from termination on true success.
    base = TrainConfig(env=env_id, env_kwargs=env_kwargs, algo="ppo", steps=steps, n_envs=n_envs, eval_freq=eval_freq,
                       eval_episodes=eval_episodes, ignore_terminations=True)
    refinement = None
    if refine_steps > 0:
        say(f"[3b/5] refining the classifier, {refine_rounds} round(s): PPO on its reward for {refine_steps} steps, "
            "recording; refit on data + recordings")
        classifier, refinement = refine_classifier(
            classifier, progress_model, base, out, refine_steps, inputs=classifier_inputs, epochs=classifier_epochs, seed=seeds[0],
            rounds=refine_rounds, progress=progress)
        clf_report = json.loads(report_path(classifier, ".report.json").read_text())
        for k, r in enumerate(refinement["rounds"], 1):
            say(f"      round {k}: {r['recorded_episodes']} recorded episodes ({r['recorded_successes']} true successes); "
                f"the classifier called {r['false_positive_rate_before']:.1%} of their failed frames successes, "
                f"the refitted one {r['false_positive_rate_after']:.1%} (now in its training data)")
        say(f"      refitted classifier val AUC {clf_report['val_auc']:.3f}")

    every = {
        "a": Condition("a_sparse_env", "sparse"),
        "b": Condition("b_dense_env", "env"),
        "c": Condition("c_classifier", f"classifier:{classifier}", gamma=learned_gamma),
        "d": Condition("d_classifier+pbrs_progress", f"classifier:{classifier}", str(progress_model), learned_gamma),
        "e": Condition("e_progress", f"progress:{progress_model}", gamma=learned_gamma),
    }
    chosen = [every[letter] for letter in conditions]
    say(f"[4/5] training PPO for {steps} steps under {len(chosen)} rewards x {len(seeds)} seed(s)")
    extra = {
        "data": counts,
        "classifier": {k: clf_report[k] for k in ("val_auc", "suggested_threshold", "at_suggested_threshold", "counts")},
        "progress": {k: v for k, v in prog_report.items() if k != "history"},
        "classifier_refinement": refinement,
    }
    preamble = (
        f"Data: {counts['positive']} successful and {counts['negative']} failed episodes ({counts['frames']} frames). "
        f"Classifier ({'+'.join(classifier_inputs)}): held-out AUC {clf_report['val_auc']:.3f}. "
    )
    if refinement is not None:
        preamble += (
            f"Refined by {len(refinement['rounds'])} round(s) of negative mining: each time PPO trained "
            f"{refinement['steps']} steps on the current classifier's reward (+ PBRS) while recorded, and the "
            "classifier was refitted on the data plus every recording; share of the recorded failed frames the "
            "classifier called successes, before -> after each refit: "
            + ", ".join(f"{r['false_positive_rate_before']:.1%} -> {r['false_positive_rate_after']:.1%}"
                        for r in refinement["rounds"]) + ". "
        )
    preamble += f"Setup before training took {time.perf_counter() - started:.0f} s.\n\n"
    summary = run_conditions(chosen, base, seeds, out, jobs=jobs, progress=progress, extra=extra, preamble=preamble,
                             ray=ray)
    say(f"[5/5] results (total {time.perf_counter() - started:.0f} s)")
    say(format_table(summary))
    say(f"report: {out / 'report.md'}  curves: {out / 'curves.png'}  results: {out / 'results.json'}")
    return summary


def refine_classifier(
    classifier: pathlib.Path, potential: pathlib.Path, base: TrainConfig, out: pathlib.Path, steps: int, *,
    inputs: tuple[str, ...], epochs: int, seed: int, rounds: int = 1, progress: bool = True,
) -> tuple[pathlib.Path, dict[str, Any]]:
    """Rounds of negative mining: let PPO exploit the classifier, record it, refit on everything.

    An agent finds the states a classifier wrongly calls successes within a few thousand steps
    (on PushCube-v1 the first classifier called 68% of a hacking agent's failed frames successes).
    Those recorded frames carry the env's own success labels (the simulator stands in for the
    human who labels them in HIL-SERL), so refitting on the original data plus the recordings
    turns them into negatives. A refitted classifier has new blind spots, so each further round
    exploits the latest one. The first classifier is kept as ``classifier_initial.pt``, round k's
    refit (but the last) as ``classifier_round{k}.pt``; the last is ``classifier``.
    """
    from dataclasses import replace

    from collectors import load_trajectories
    from reward_wrappers import load_reward_model
    from trainers import fit_classifier
    from trainers.common import report_path
    from trainers.evaluate import predict_trajectory

    if rounds < 1:
        raise ValueError(f"refine rounds must be >= 1, got {rounds}")
    initial = classifier.with_name("classifier_initial.pt")
    classifier.replace(initial)
    for suffix in (".report.json", ".errors.png"):
        if report_path(classifier, suffix).exists():
            report_path(classifier, suffix).replace(report_path(initial, suffix))

    def false_positive_rate(path: pathlib.Path, trajectories: list[Any]) -> float:
        model = load_reward_model(path)
        scores = np.concatenate([predict_trajectory(model, t) for t in trajectories])
        labels = np.concatenate([np.asarray(t.labels) for t in trajectories])
        failed = labels < 0.5
        return float((scores[failed] > 0.0).mean()) if failed.any() else 0.0  # logit > 0: p > 0.5

    data = list(load_trajectories(out / "data"))
    current, history = initial, []
    for k in range(1, rounds + 1):
        recorded = out / "refine_data" / f"round{k}"
        train_agent(replace(base, reward=f"classifier:{current}", pbrs=str(potential), steps=steps,
                            logdir=str(out / "runs" / f"refine{k}"), collect=str(recorded)))
        mined = list(load_trajectories(recorded))
        data += mined
        target = classifier if k == rounds else classifier.with_name(f"classifier_round{k}.pt")
        refitted = fit_classifier(data, target, inputs=inputs, epochs=epochs, seed=seed,
                                  logdir=out / "tb" / f"classifier_refit{k}", progress=progress)
        history.append({
            "recorded_episodes": len(mined),
            "recorded_successes": int(sum(t.success for t in mined)),
            "false_positive_rate_before": false_positive_rate(current, mined),
            "false_positive_rate_after": false_positive_rate(refitted, mined),
        })
        current = refitted
    return current, {
        "steps": steps,
        "rounds": history,
        "recorded_episodes": sum(r["recorded_episodes"] for r in history),
        "recorded_successes": sum(r["recorded_successes"] for r in history),
        "false_positive_rate_before": history[0]["false_positive_rate_before"],
        "false_positive_rate_after": history[-1]["false_positive_rate_after"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="directory for data, checkpoints, runs and the report")
    parser.add_argument("--env", default="PointReach-v0",
                        help="env with a scripted expert: a built-in id, PickCube-v1 or PushCube-v1")
    parser.add_argument("--env-kwargs", default=None, metavar="JSON",
                        help="constructor arguments as a JSON object, e.g. '{\"camera_view\": \"side\"}' for ManiSkill")
    parser.add_argument("--episodes", type=int, default=200, help="episodes to collect")
    parser.add_argument("--classifier-inputs", nargs="+", default=["rgb"], help="observation keys the classifier reads")
    parser.add_argument("--conditions", nargs="+", choices=CONDITION_LETTERS, default=list(CONDITION_LETTERS),
                        help="a sparse env, b dense env, c classifier, d classifier + PBRS(progress), e progress")
    parser.add_argument("--progress-failure-fraction", type=float, default=0.0,
                        help="share of the progress model's training windows taken from failed episodes (target 0)")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="negative mining before the comparison: PPO on the classifier's reward for this many steps, "
                             "recorded, then the classifier is refitted on data + recordings (0: off)")
    parser.add_argument("--refine-rounds", type=int, default=1,
                        help="rounds of negative mining (with --refine-steps), each exploiting the latest classifier")
    parser.add_argument("--steps", type=int, default=64_000, help="PPO env steps per condition")
    parser.add_argument("--n-envs", type=int, default=8, help="parallel envs per training run")
    parser.add_argument("--eval-freq", type=int, default=8_000, help="env steps between true-success evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20, help="deterministic episodes per evaluation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel processes (--engine local)")
    parser.add_argument("--learned-gamma", type=float, default=None, metavar="G",
                        help="agent discount (and PBRS gamma) for the learned conditions c, d, e; default: the env's, "
                             "as for a and b (PPO: 0.95; PBRS on PushCube learned at 0.95, not at 0.8)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets: a smoke run (about 1 minute on PointReach-v0, 4 on PushCube-v1)")
    ray_engine.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = dict(env_id=args.env, episodes=args.episodes, classifier_inputs=tuple(args.classifier_inputs),
                                  steps=args.steps, seeds=tuple(args.seeds), jobs=args.jobs, n_envs=args.n_envs,
                                  eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, conditions=tuple(args.conditions),
                                  progress_failure_fraction=args.progress_failure_fraction, refine_steps=args.refine_steps,
                                  refine_rounds=args.refine_rounds, learned_gamma=args.learned_gamma)
    try:
        kwargs["env_kwargs"] = envs.parse_env_kwargs(args.env_kwargs)
        kwargs["ray"] = ray_engine.grid_from_args(args)  # Ray missing: said now, not after minutes of fitting
    except (ValueError, RayUnavailableError) as exc:
        print(f"rewardswap demo: error: {exc}", file=sys.stderr)
        return 2
    if args.quick:
        kwargs.update(episodes=min(args.episodes, 21), steps=min(args.steps, 2_048), classifier_epochs=1,
                      progress_epochs=1, eval_freq=1_024, n_envs=4, refine_steps=min(args.refine_steps, 1_024))
    for name in ("refine_rounds", "eval_episodes"):
        if getattr(args, name) < 1:
            print(f"rewardswap demo: error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if args.learned_gamma is not None:
        try:
            check_discount(args.learned_gamma, "--learned-gamma")
        except ValueError as exc:
            print(f"rewardswap demo: error: {exc}", file=sys.stderr)
            return 2
    if args.env not in envs.SUPPORTED_EXPERT_ENV_IDS:  # the demo collects with the scripted expert
        print(f"rewardswap demo: error: --env {args.env!r} has no scripted expert; choose one of "
              f"{list(envs.SUPPORTED_EXPERT_ENV_IDS)}", file=sys.stderr)
        return 2
    try:
        run_demo(args.out, **kwargs)
    except RayUnavailableError as exc:
        print(f"rewardswap demo: error: {exc}", file=sys.stderr)
        return 2
    return 0
