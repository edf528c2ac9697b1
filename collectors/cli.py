"""Record trajectories from a policy into positive/negative .npy buffers.

Runs ``--episodes`` episodes of ``--env`` with a scripted expert, random actions or a saved SB3
model, and writes each finished episode under ``OUT/positive/`` or ``OUT/negative/`` (see
``collectors.format``). Episode ``e`` (0-based) is reset with seed ``--seed + e``, so a run is
reproducible and ``meta.json`` names each episode's seed. With ``--n-envs K`` the episodes are
split over K worker processes writing into the same buffer; with ``--engine ray --workers N``
over N actors on a Ray cluster (:mod:`collectors.ray_collect`), again into the same buffer.

``--policy module:factory`` imports ``module`` and calls ``factory(env, seed)``, which returns
``policy(obs) -> action`` (a suite's own scripted policy, say); ``--noise`` is applied on top.

Examples:
  rewardswap collect --env PointReach-v0 --policy expert --noise 0.5 --episodes 200 --obs rgb --out data/reach
  rewardswap collect --env PickCube-v1 --policy runs/ppo.zip --trust-policy --episodes 50 --n-envs 2 --out data/pick
  rewardswap collect --env PointReach-v0 --episodes 10000 --engine ray --address auto --workers 32 --out /shared/data/reach
  rewardswap collect --env PushCube-v1 --env-kwargs '{"camera_view": "workspace"}' --obs state+rgb --episodes 20 --out data/push
  rewardswap collect --env my_suite:Lift-v0 --env-kwargs '{"task": "lift"}' --policy my_suite.policies:scripted --episodes 50 --out data/lift
  rewardswap collect --import-rlinf reward_data/ --out data/rlinf --allow-pickle
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import envs
from collectors.format import SPLITS
from collectors.ray_cluster import RayUnavailableError, add_engine_arguments, engine_problems, import_ray
from collectors.rollout import split_episodes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Keep the examples' line breaks; defaults are spelled out in each help text instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:" + (__doc__ or "").split("Examples:", 1)[-1]
    envs.add_env_arguments(parser, default_env=None)
    parser.add_argument("--policy", default="expert",
                        help="'expert' (envs.expert_policy), 'random', PATH.zip of a saved SB3 model, or "
                             "module:factory, a callable factory(env, seed) -> policy(obs) -> action (default: expert)")
    parser.add_argument("--trust-policy", action="store_true",
                        help="allow loading --policy PATH.zip: SB3 zips hold pickles, which run code when loaded; "
                             "only for files you trust")
    parser.add_argument("--algo", choices=("auto", "ppo", "sac"), default="auto",
                        help="SB3 class for PATH.zip; auto tries PPO then SAC (default: auto)")
    parser.add_argument("--episodes", type=int, help="episodes to run (each is written unless its split is full)")
    parser.add_argument("--out", required=True, help="buffer root: OUT/positive/<id>/, OUT/negative/<id>/")
    parser.add_argument("--obs", choices=("state", "rgb", "state+rgb"), default="state",
                        help="observation mode; every key is stored (default: state)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="action noise in [0, 1] for expert and model policies: 0 clean, 1 random (default: 0)")
    parser.add_argument("--ignore-terminations", action="store_true",
                        help="episodes run their full length after success (built-in and ManiSkill envs), as "
                             "train-agent runs them; record this way for a potential that must hold after success")
    parser.add_argument("--n-envs", type=int, default=1, help="worker processes, one env each (default: 1)")
    add_engine_arguments(parser)
    parser.add_argument("--workers", type=int, default=None,
                        help="with --engine ray: collector actors, one CPU each, all writing into --out (which every "
                             "node must see); default: one per CPU of the cluster")
    parser.add_argument("--seed", type=int, default=0, help="episode e is reset with seed S+e (default: 0)")
    parser.add_argument("--info-keys", nargs="*", default=[], metavar="KEY",
                        help="info keys to store per frame, e.g. stage flags (PointKeyDoor-v0: has_key)")
    parser.add_argument("--success-key", default="success", help="info key of the per-frame success flag (default: success)")
    parser.add_argument("--max-positive", type=int, default=None, help="cap on trajectories in OUT/positive (counted on disk)")
    parser.add_argument("--max-negative", type=int, default=None, help="cap on trajectories in OUT/negative (counted on disk)")
    parser.add_argument("--sync-write", action="store_true", help="write on the stepping thread (default: a background thread)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--import-rlinf", metavar="SRC", default=None,
                        help="instead of collecting, convert RLinf RewardDataCollector .npy files from SRC into OUT")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="with --import-rlinf: allow unpickling SRC (RLinf files are pickles; only for trusted files)")


# ----------------------------------------------------------------------------- policies
def make_policy(args: argparse.Namespace, env: Any, seed: int) -> Callable[[Any], Any]:
    """``policy(obs) -> action`` for ``--policy``."""
    from envs.experts import add_noise

    if args.policy == "random":
        env.action_space.seed(seed)
        return lambda obs: env.action_space.sample()
    if args.policy == "expert":
        return envs.expert_policy(env, noise=args.noise, seed=seed)
    if is_factory_reference(args.policy):
        act = load_policy_factory(args.policy)(env, seed)
        if not callable(act):
            raise ValueError(f"--policy {args.policy}: the factory returned {type(act).__name__}, not a policy(obs) -> action")
    else:
        path = Path(args.policy)
        if path.suffix != ".zip" or not path.is_file():
            raise ValueError(f"--policy must be 'expert', 'random', an existing SB3 .zip file or module:factory, "
                             f"got {args.policy!r}")
        model = load_sb3_model(path, args.algo)
        act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
    return add_noise(act, env.action_space, args.noise, seed) if args.noise else act


def is_factory_reference(policy: str) -> bool:
    """``module:factory`` (not a file path)."""
    module, sep, name = policy.partition(":")
    return bool(sep and module and name.isidentifier() and not Path(policy).exists())


def load_policy_factory(reference: str) -> Callable[[Any, int], Callable[[Any], Any]]:
    """Import ``module`` and return its attribute ``factory``, named by the user on the command line."""
    import importlib

    module_name, _, name = reference.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except ImportError as exc:
        raise ValueError(f"--policy {reference}: cannot import module {module_name!r} ({exc})") from None
    except AttributeError:
        raise ValueError(f"--policy {reference}: module {module_name!r} has no attribute {name!r}") from None
    if not callable(factory):
        raise ValueError(f"--policy {reference}: {name!r} is not callable; expected factory(env, seed) -> policy")
    return factory


def load_sb3_model(path: Path, algo: str) -> Any:
    from stable_baselines3 import PPO, SAC

    classes = {"ppo": [PPO], "sac": [SAC], "auto": [PPO, SAC]}[algo]
    errors = []
    for cls in classes:
        try:
            return cls.load(path, device="cpu")
        except Exception as exc:  # the wrong class fails in various ways; report them all
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
    raise ValueError(f"could not load {path} as " + " or ".join(c.__name__ for c in classes) + "; " + "; ".join(errors)
                     + " (pass --algo)")


# ----------------------------------------------------------------------------- workers
def collect_episodes(args: argparse.Namespace, episodes: list[int], report: Callable[[tuple], None]) -> dict[str, Any]:
    """Run ``episodes`` (global indices) in one env; ``report(("episode", steps, success))`` each."""
    import torch

    torch.set_num_threads(1)  # software rendering and torch threads fight for the cores
    from collectors.recorder import TrajectoryRecorder
    from collectors.rollout import record_episodes

    env_kwargs = envs.parse_env_kwargs(args.env_kwargs)
    env = envs.make(args.env, obs=args.obs, reward="dense", render_size=args.render_size,
                    max_episode_steps=args.max_episode_steps,
                    ignore_terminations=getattr(args, "ignore_terminations", False), **env_kwargs)
    spec = envs.env_spec(args.env, env_kwargs, args.max_episode_steps, args.render_size)
    recorder = TrajectoryRecorder(
        env, args.out, success_key=args.success_key, info_keys=tuple(args.info_keys),
        max_positive=args.max_positive, max_negative=args.max_negative, async_write=not args.sync_write,
        require_success_key=False,  # an env without a success flag records unlabelled trajectories (NaN labels)
        # "env_reward" states what rewards.npy holds: train-agent --reward env --demos checks it
        metadata={"policy": args.policy, "noise": args.noise, "obs_mode": args.obs, "env": spec, "env_reward": "dense"},
    )
    steps, errors = 0, []
    try:
        policy = make_policy(args, recorder, args.seed + (episodes[0] if episodes else 0))
        steps = record_episodes(recorder, lambda e: policy, episodes, seed=args.seed, success_key=args.success_key,
                                on_episode=lambda e, n, success: report(("episode", n, success)))
        if recorder.full:
            report(("full",))
    except Exception:
        errors.append(traceback.format_exc())
    try:
        recorder.close()
    except Exception:
        errors.append(traceback.format_exc())
    # What reached the disk is counted even when a write failed (a full disk): the summary says so.
    stats = recorder.stats
    return {"written": dict(stats.written), "dropped_full": dict(stats.dropped_full), "frames": stats.frames,
            "paths": [str(p) for p in stats.paths], "steps": steps, "errors": errors}


def _worker(args: argparse.Namespace, episodes: list[int], events: Any) -> None:
    try:
        result = collect_episodes(args, episodes, events.put)
        events.put(("done", result))
    except BaseException:  # shown by the parent, which decides the exit code
        events.put(("error", traceback.format_exc()))


#: How often the parent looks for workers that died without reporting (seconds).
WORKER_CHECK_SECONDS = 0.5


def died(index: int, proc: Any) -> str:
    """What to tell the user of a worker that ended without reporting (a negative exit code is a signal)."""
    how = (f"was killed by {signal.Signals(-proc.exitcode).name}" if proc.exitcode < 0
           else f"exited with code {proc.exitcode}")
    return (f"worker {index} (pid {proc.pid}) {how} before it finished (killed from outside, the OOM killer, or a "
            "crash); collection stopped. The trajectories already finished are in the buffer; the summary counts "
            "only what the workers reported")


def stop_workers(procs: list[Any], grace: float = 5.0) -> None:
    """End every worker that is still running and reap all of them: none is left a zombie. Each one's
    writer process sees end of file when its worker ends, writes what it holds, and exits."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _env_problems(args: argparse.Namespace) -> list[str]:
    """An unknown id, bad JSON or bad constructor arguments, found here before any worker starts."""
    try:
        env_kwargs = envs.parse_env_kwargs(args.env_kwargs)
        if env_kwargs:
            envs.step_seconds(args.env, steps=1, obs=args.obs, render_size=args.render_size,
                              max_episode_steps=args.max_episode_steps, **env_kwargs)
        else:
            envs.check_env_id(args.env)
    except ValueError as exc:
        return [str(exc)]
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        return [f"--max-episode-steps must be >= 1, got {args.max_episode_steps}"]
    if getattr(args, "ignore_terminations", False) and not envs.supports_ignore_terminations(args.env):
        return [f"--ignore-terminations: {args.env} does not support it (built-in and ManiSkill envs do)"]
    return []


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"written": {s: 0 for s in SPLITS}, "dropped_full": {s: 0 for s in SPLITS},
                             "frames": 0, "paths": [], "steps": 0}
    for r in results:
        for s in SPLITS:
            total["written"][s] += r["written"][s]
            total["dropped_full"][s] += r["dropped_full"][s]
        total["frames"] += r["frames"]
        total["paths"] += r["paths"]
        total["steps"] += r["steps"]
    return total


def _dir_bytes(paths: list[str]) -> int:
    return sum(f.stat().st_size for p in paths for f in Path(p).iterdir())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def run(args: argparse.Namespace) -> int:
    if args.import_rlinf:
        from collectors.rlinf import import_rlinf

        try:
            written = import_rlinf(args.import_rlinf, args.out, allow_pickle=args.allow_pickle)
        except (ValueError, FileNotFoundError) as exc:
            print(f"rewardswap collect: {exc}", file=sys.stderr)
            return 2
        print(f"imported {len(written)} RLinf trajectories into {args.out}")
        return 0
    problems = [f"{flag} is required" for flag, v in (("--env", args.env), ("--episodes", args.episodes)) if v is None]
    if args.episodes is not None and args.episodes < 1:
        problems.append("--episodes must be >= 1")
    if args.n_envs < 1:
        problems.append("--n-envs must be >= 1")
    problems += engine_problems(args)
    if args.engine == "ray" and args.n_envs != 1:
        problems.append("--n-envs counts local worker processes; with --engine ray give --workers (Ray actors)")
    if args.engine != "ray" and args.workers is not None:
        problems.append("--workers counts Ray actors (--engine ray); for local worker processes give --n-envs")
    if args.workers is not None and args.workers < 1:
        problems.append("--workers must be >= 1")
    if not 0.0 <= args.noise <= 1.0:
        problems.append("--noise must be in [0, 1]")
    if args.policy not in ("expert", "random") and not is_factory_reference(args.policy) and not (
            args.policy.endswith(".zip") and Path(args.policy).is_file()):
        problems.append(f"--policy must be 'expert', 'random', an existing SB3 .zip file or module:factory, "
                        f"got {args.policy!r}")
    if args.policy.endswith(".zip") and not args.trust_policy:
        problems.append(f"--policy {args.policy}: SB3 zips hold pickles, and loading one runs whatever code it "
                        "carries; pass --trust-policy if you trust this file")
    if not problems and args.env is not None:
        problems += _env_problems(args)
    if not problems and args.engine == "ray":
        try:
            import_ray()  # a missing extra is said before anything starts
        except RayUnavailableError as exc:
            problems.append(str(exc))
    if problems:
        print("rewardswap collect: " + "; ".join(problems), file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    shards = split_episodes(args.episodes, args.n_envs)
    bar = tqdm(total=args.episodes, desc=f"collect {args.env}", unit="ep", disable=True if args.no_progress else None)  # None: off when not a tty
    counts = {"success": 0, "steps": 0}

    def on_event(event: tuple) -> None:
        if event[0] == "episode":
            counts["steps"] += event[1]
            counts["success"] += int(event[2])
            bar.update(1)
            bar.set_postfix(success=counts["success"], steps=counts["steps"])

    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        if args.engine == "ray":
            from collectors.ray_collect import collect_on_ray

            results, errors = collect_on_ray(args, args.workers, collect_episodes, on_event)
        elif len(shards) == 1:
            results.append(collect_episodes(args, shards[0], on_event))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # no fork of a process that may hold render/torch threads
            events = ctx.Queue()
            procs = [ctx.Process(target=_worker, args=(args, shard, events), daemon=True) for shard in shards]
            for p in procs:
                p.start()
            finished = 0
            while finished < len(procs):
                try:
                    event = events.get(timeout=WORKER_CHECK_SECONDS)
                except queue.Empty:
                    event = None
                if event is not None and event[0] in ("done", "error"):
                    (results if event[0] == "done" else errors).append(event[1])
                    finished += 1
                elif event is not None:
                    on_event(event)
                # Checked at every event and every WORKER_CHECK_SECONDS, whatever the others report: a
                # worker killed from outside (kill -9, the OOM killer) or crashed in C never reports.
                dead = [(i, p) for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead:
                    errors += [died(i, p) for i, p in dead]
                    break
            stop_workers(procs)
    except RayUnavailableError as exc:  # not installed, or no cluster at --address: nothing was collected
        bar.close()
        print(f"rewardswap collect: {exc}", file=sys.stderr)
        return 2
    except Exception:
        errors.append(traceback.format_exc())
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    errors += [e for r in results for e in r.get("errors", [])]
    total = _merge(results)
    bytes_written = _dir_bytes(total["paths"])
    print(
        f"collected {args.env} into {args.out}: "
        f"{total['written']['positive']} positive, {total['written']['negative']} negative trajectories"
        + (f" ({sum(total['dropped_full'].values())} not written: split full)" if any(total["dropped_full"].values()) else "")
        + f"; {total['frames']} frames, {_human(bytes_written)} ({bytes_written} bytes); "
        f"{total['steps']} steps in {elapsed:.1f} s = {total['steps'] / max(elapsed, 1e-9):.0f} steps/s"
    )
    unlabelled = _unlabelled(args.out)
    if unlabelled:
        print(f"{unlabelled} trajectories in {args.out} have no success flag ({args.env} reports no "
              f"info[{args.success_key!r}]): they are unlabelled until marked with "
              f"`rewardswap label --data {args.out} --labeller web` (or module:callable)")
    for err in errors:
        print(f"rewardswap collect: a worker failed:\n{err}", file=sys.stderr)
    return 1 if errors else 0


def _unlabelled(out: str) -> int:
    from collectors.reader import load_trajectories

    return sum(not t.labelled for t in load_trajectories(out, skip_bad=True))


__all__ = ["add_arguments", "run", "collect_episodes", "make_policy", "load_sb3_model"]
