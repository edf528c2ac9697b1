"""Env steps/s of the torch-batched PointReach-v0, raw and with a learned reward on its tensors.

For each env count: the raw ``envs.batched.BatchedPointReach`` and the same env under
``TorchLearnedReward`` with an MLP reward model on ``state`` (untrained; the trainers' default
widths and a small one; run by ``predict_torch`` on the env's device), timed over ``--steps`` batched steps with random actions,
alternating raw and learned blocks ``--repeats`` times; medians. Target (issue 21): learned
>= 90 % of raw at 4,096 envs on the CPU. Writes ``benchmarks/results/batched_throughput.json``.

    python benchmarks/batched_throughput.py
    python benchmarks/batched_throughput.py --device cuda     # on a machine with a GPU
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time
from typing import Sequence

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.train import package_versions  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from envs.batched import BatchedPointReach  # noqa: E402
from reward_wrappers import ModelSpec, TorchRewardModel  # noqa: E402
from reward_wrappers.torch_batched import TorchLearnedReward  # noqa: E402


#: Reward models timed: the trainers' default state MLP (hidden 256, features 128: ~66k multiply-adds per
#: env step) and a small one (hidden 32, features 32: ~2.3k).
MODELS = {"learned_mlp": {}, "learned_small_mlp": {"hidden": 32, "feature_dim": 32}}


def steps_per_second(env, actions: torch.Tensor, steps: int) -> float:
    cuda = actions.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % len(actions)])
    if cuda:
        torch.cuda.synchronize()
    return steps * env.num_envs / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=200, help="batched steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batched_throughput.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for n in args.envs:
        raw = BatchedPointReach(n, device=args.device)
        spec = ModelSpec.from_space(raw.single_observation_space, ("state",))
        conditions = {"raw": raw}
        for name, widths in MODELS.items():  # the trainers' default MLP, and a small one
            model = TorchRewardModel.build(spec, **widths).to(args.device)
            conditions[name] = TorchLearnedReward(BatchedPointReach(n, device=args.device), model)
        actions = torch.rand(50, n, 2, device=args.device) * 2 - 1
        for env in conditions.values():
            env.reset(seed=0)
            steps_per_second(env, actions, 10)  # warm-up
        timings: dict[str, list[float]] = {name: [] for name in conditions}
        for _ in range(args.repeats):  # alternating blocks: machine noise hits every condition alike
            for name, env in conditions.items():
                timings[name].append(steps_per_second(env, actions, args.steps))
        row = {"envs": n, **{f"{name}_steps_per_second": statistics.median(t) for name, t in timings.items()}}
        for name in MODELS:
            row[f"{name}_over_raw_median"] = statistics.median(b / a for a, b in zip(timings["raw"], timings[name]))
        rows.append(row)
        print(f"{n:>6} envs: raw {row['raw_steps_per_second']:>11,.0f} steps/s; " + "; ".join(
            f"{name} {row[f'{name}_steps_per_second']:>10,.0f} ({100 * row[f'{name}_over_raw_median']:.1f} % of raw)" for name in MODELS))
    at_4096 = next((r["learned_mlp_over_raw_median"] for r in rows if r["envs"] == 4096), None)
    write_json_atomic(args.out, {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "device": args.device, "torch_threads": args.threads, "rows": rows,
        "target": "learned MLP >= 90 % of raw at 4,096 envs on CPU",
        "target_met": None if at_4096 is None else at_4096 >= 0.9, "versions": package_versions(),
        "hardware": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
