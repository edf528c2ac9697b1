"""Pixel-reward SAC paid every step vs at episode end: env steps per second, side by side in one run.

Both conditions train the same SAC (state policy, rgb classifier reward, ``--n-envs`` worker envs)
for ``--steps`` env steps, one after the other in this process, alternating ``--repeats`` times:
``--reward-at step`` renders the camera every step, ``--reward-at episode-end`` only on each
episode's last step (``envs.make(render_at="episode-end")``). Beside them, the share of an env
step spent rendering: one env stepped with random actions in ``state`` mode (simulation) and in
``state+rgb`` mode (simulation and rendering). Medians; writes ``--out`` with the exact command.

    python benchmarks/reward_at_cost.py --classifier /tmp/fewlab_work/rgb.pt \
        --out benchmarks/results/reward_at/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from agents.config import TrainConfig  # noqa: E402
from agents.train import package_versions, train_agent  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402


def seconds_per_step(env_id: str, obs: str, steps: int, env_kwargs: dict) -> float:
    env = envs.make(env_id, obs=obs, ignore_terminations=True, seed=0, **env_kwargs)
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PushCube-v1")
    parser.add_argument("--env-kwargs", default='{"camera_view": "side"}')
    parser.add_argument("--classifier", required=True, help="an rgb classifier checkpoint of this env")
    parser.add_argument("--steps", type=int, default=600, help="env steps per training run")
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    env_kwargs = json.loads(args.env_kwargs)

    sim = [seconds_per_step(args.env, "state", 200, env_kwargs) for _ in range(args.repeats)]
    rendered = [seconds_per_step(args.env, "state+rgb", 200, env_kwargs) for _ in range(args.repeats)]
    walls: dict[str, list[float]] = {"step": [], "episode-end": []}
    for _ in range(args.repeats):
        for reward_at in ("episode-end", "step"):
            with tempfile.TemporaryDirectory() as run_dir:
                cfg = TrainConfig(env=args.env, env_kwargs=env_kwargs, algo="sac", reward=f"classifier:{args.classifier}",
                                  reward_at=reward_at, policy_obs="state", steps=args.steps, n_envs=args.n_envs,
                                  seed=args.seed, eval_freq=10**9, eval_episodes=1, logdir=run_dir,
                                  algo_kwargs={"gradient_steps": args.n_envs, "learning_starts": 100})
                walls[reward_at].append(train_agent(cfg)["wall_seconds"])
                print(f"{reward_at}: {args.steps} env steps of SAC in {walls[reward_at][-1]:.1f} s", flush=True)
    rate = {k: args.steps / statistics.median(v) for k, v in walls.items()}
    share = 1.0 - statistics.median(sim) / statistics.median(rendered)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "env_steps_per_second": rate, "speedup": rate["episode-end"] / rate["step"],
        "train_wall_seconds": walls,
        "env_seconds_per_step": {"state (simulation)": statistics.median(sim),
                                 "state+rgb (simulation + rendering)": statistics.median(rendered)},
        "rendering_share_of_an_env_step": share,
        "versions": package_versions(),
        "hardware": {"machine": platform.machine(), "cpus": os.cpu_count(), "processor": platform.processor() or None},
    }
    write_json_atomic(args.out, result)
    print(json.dumps({k: result[k] for k in ("env_steps_per_second", "speedup", "rendering_share_of_an_env_step")}, indent=1))


if __name__ == "__main__":
    main()
