"""How much does ``TrajectoryRecorder`` slow an env down? Env steps/s with and without it.

Runs ``PointReach-v0`` (rgb observations by default) under four configurations: the bare env,
the recorder writing synchronously (``sync``), the recorder with ``async_write=True`` (``async``:
a writer process fed through shared memory) and, for comparison, ``async_write="thread"``
(``thread``: a writer thread in the env's process). The machine is shared and noisy, so the configurations are measured
*interleaved*: each repeat builds fresh envs and runs them in alternating blocks of steps, and
the overhead is a ratio of times taken within that one repeat. The table reports medians over
repeats. Each configuration's steps in a repeat stand for one run of ``--steps`` steps that
ends with ``close()``: recorder blocks end with a ``flush()``, so no write is left for another
configuration's block to pay for, and the flush of the run's last block is timed (the wait for
the last episodes to reach the disk, ~2 ms, that a real run pays once, at ``close()``). The
flushes between blocks are not timed (an artefact of interleaving: a real run keeps stepping
while those episodes are written); ``--time-every-flush`` times them too, as the figures of the
first three sessions on the issue did. Their median is reported as ``drain_ms``.

Writes ``benchmarks/results/collect_overhead.json`` (figures, the exact command, versions).

    python benchmarks/collect_overhead.py                # the committed figures
    python benchmarks/collect_overhead.py --repeats 3 --steps 3000 --no-save   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

CONFIGS = ("bare", "sync", "async", "thread")
#: TrajectoryRecorder(async_write=...) per configuration
ASYNC_WRITE = {"sync": False, "async": True, "thread": "thread"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Overhead = 1 - (recorder steps/s) / (bare steps/s), per repeat; medians reported. Target: async <= 10%.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", default="PointReach-v0", help="env id for envs.make")
    p.add_argument("--obs", default="rgb", choices=("state", "rgb", "state+rgb"), help="observation mode")
    p.add_argument("--render-size", type=int, default=64, help="image side in pixels")
    p.add_argument("--steps", type=int, default=20000, help="env steps per configuration per repeat")
    p.add_argument("--block", type=int, default=5000, help="steps per interleaved block")
    p.add_argument("--repeats", type=int, default=7, help="independent repeats (fresh envs, fresh buffers)")
    p.add_argument("--warmup", type=int, default=500, help="untimed steps per configuration per repeat")
    p.add_argument("--settle", type=float, default=15.0,
                   help="untimed seconds between repeats for the disk to drain (after os.sync)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp", default=None, help="where buffers are written (default: a temp dir, deleted)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "collect_overhead.json"),
                   help="result JSON path")
    p.add_argument("--no-save", action="store_true", help="print only; do not write --out")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS,
                   help="configurations to run (bare is always run: overheads are relative to it)")
    p.add_argument("--time-every-flush", action="store_true",
                   help="charge every block's closing flush to the configuration, not only the run's last")
    p.add_argument("--buffered-io", action="store_true",
                   help="write image files with buffered write() instead of O_DIRECT (for comparison)")
    return p


def make_env(args: argparse.Namespace, config: str, out_dir: Path) -> Any:
    import envs
    from collectors import TrajectoryRecorder

    env = envs.make(args.env, obs=args.obs, render_size=args.render_size)
    if config == "bare":
        return env
    return TrajectoryRecorder(env, out_dir / config, async_write=ASYNC_WRITE[config])


def device_interrupts_per_cpu() -> list[int]:
    """Device interrupts (numbered IRQ lines of /proc/interrupts) serviced so far, per CPU."""
    try:
        with open("/proc/interrupts") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    n_cpus = len(lines[0].split())
    totals = [0] * n_cpus
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        if name.strip().isdigit():
            counts = rest.split()[:n_cpus]
            for i, count in enumerate(counts):
                if count.isdigit():
                    totals[i] += int(count)
    return totals


def _cpu() -> float:
    t = os.times()
    return t.user + t.system  # this process (the writer thread's work counts, a writer process's does not)


def run_block(env: Any, actions: np.ndarray, state: dict[str, Any], *, time_flush: bool = True) -> float:
    """Step ``env`` through ``actions`` (resetting on episode end), then wait for its writes;
    return the seconds taken, the wait included only with ``time_flush``."""
    cpu_start = _cpu()
    start = time.perf_counter()
    step = env.step
    for action in actions:
        _obs, _r, terminated, truncated, _info = step(action)
        if terminated or truncated:
            env.reset()
            state["episodes"] += 1
    stepped = time.perf_counter()
    if hasattr(env, "flush"):
        env.flush()  # the writer's backlog: never left for another configuration's block
        state.setdefault("drain_s", []).append(time.perf_counter() - stepped)
    elapsed = (time.perf_counter() if time_flush else stepped) - start
    state["cpu_s"] = state.get("cpu_s", 0.0) + _cpu() - cpu_start
    return elapsed


def selected(args: argparse.Namespace) -> tuple[str, ...]:
    """The configurations to run, in CONFIGS order, bare always first."""
    return tuple(c for c in CONFIGS if c == "bare" or c in args.configs)


def one_repeat(args: argparse.Namespace, repeat: int, tmp_root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + repeat)
    out_dir = tmp_root / f"repeat{repeat}"
    configs = selected(args)
    recorded = configs[1:]
    envs_by_config = {c: make_env(args, c, out_dir) for c in configs}
    irq_before = device_interrupts_per_cpu()
    states = {c: {"episodes": 0} for c in configs}
    seconds = {c: 0.0 for c in configs}
    action_dim = envs_by_config["bare"].action_space.shape
    for c, env in envs_by_config.items():
        env.reset(seed=args.seed + repeat)
        run_block(env, rng.uniform(-1, 1, (args.warmup, *action_dim)).astype(np.float32), states[c])
        states[c]["warmup_cpu_s"] = states[c]["cpu_s"]
        states[c]["drain_s"] = []
    n_blocks = max(1, args.steps // args.block)
    for b in range(n_blocks):
        # The same actions for every configuration; the order rotates so none always goes first.
        actions = rng.uniform(-1, 1, (args.block, *action_dim)).astype(np.float32)
        k = b % len(configs)
        order = configs[k:] + configs[:k]
        for c in order:
            seconds[c] += run_block(envs_by_config[c], actions, states[c],
                                    time_flush=args.time_every_flush or b == n_blocks - 1)
    irq_after = device_interrupts_per_cpu()
    written: dict[str, Any] = {}
    for c, env in envs_by_config.items():
        mode = getattr(env, "write_mode", None)  # before close: a lost writer process shows as "thread"
        env.close()
        if c != "bare":
            files = [p for p in (out_dir / c).rglob("*") if p.is_file()]
            written[c] = {
                "write_mode": mode,
                "trajectories": sum(1 for p in files if p.name == "meta.json"),
                "bytes": sum(p.stat().st_size for p in files),
            }
    shutil.rmtree(out_dir, ignore_errors=True)
    # Untimed: push this repeat's ~0.75 GB of writes and deletions to disk and let the disk drain,
    # so the next repeat does not pay for their writeback. Without the pause this VM's disk fell
    # behind within a few repeats (the sync writer's own cost doubled), and every recorder row
    # measured the disk instead of the recorder; ``--settle 0`` shows that.
    os.sync()
    if repeat < args.repeats - 1:
        time.sleep(args.settle)
    steps = n_blocks * args.block
    sps = {c: steps / seconds[c] for c in configs}
    cpu_us = {c: (states[c]["cpu_s"] - states[c]["warmup_cpu_s"]) / steps * 1e6 for c in configs}
    return {
        "steps_per_config": steps,
        "steps_per_s": sps,
        "overhead": {c: 1.0 - sps[c] / sps["bare"] for c in recorded},
        "cpu_us_per_step": cpu_us,
        "cpu_overhead": {c: cpu_us[c] / cpu_us["bare"] - 1.0 for c in recorded},
        "episodes": {c: states[c]["episodes"] for c in configs},
        "drain_ms": {c: statistics.median(states[c]["drain_s"]) * 1e3 for c in recorded},
        "written": written,
        "device_interrupts_per_cpu": [a - b for a, b in zip(irq_after, irq_before)],
    }


def versions() -> dict[str, str]:
    import gymnasium
    import numpy

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "gymnasium": gymnasium.__version__,
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)  # as everywhere rendering runs on this CPU (platform notes)
    except ImportError:  # pragma: no cover
        pass
    if args.buffered_io:
        import collectors.frames

        collectors.frames.DIRECT_MIN_BYTES = float("inf")  # type: ignore[assignment]
    tmp_root = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="collect_overhead-"))
    tmp_root.mkdir(parents=True, exist_ok=True)
    configs = selected(args)
    recorded = configs[1:]
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    repeats = []
    try:
        for r in range(args.repeats):
            res = one_repeat(args, r, tmp_root)
            repeats.append(res)
            print(f"repeat {r}: " + "  ".join(f"{c} {res['steps_per_s'][c]:6.0f}" for c in configs) + " steps/s"
                  + "  | overhead " + " ".join(f"{c} {res['overhead'][c]:+.1%}" for c in recorded)
                  + "  | CPU/step us " + " ".join(f"{c} {res['cpu_us_per_step'][c]:.0f}" for c in configs)
                  + "  | drain ms " + " ".join(f"{c} {res['drain_ms'][c]:.1f}" for c in recorded)
                  + "  | device IRQs per CPU " + "/".join(map(str, res["device_interrupts_per_cpu"])),
                  flush=True)
    finally:
        if not args.tmp:
            shutil.rmtree(tmp_root, ignore_errors=True)
    load_after = os.getloadavg()
    median_sps = {c: statistics.median(r["steps_per_s"][c] for r in repeats) for c in configs}
    median_overhead = {c: statistics.median(r["overhead"][c] for r in repeats) for c in recorded}
    median_cpu_overhead = {c: statistics.median(r["cpu_overhead"][c] for r in repeats) for c in recorded}
    median_drain_ms = {c: statistics.median(r["drain_ms"][c] for r in repeats) for c in recorded}
    spread = {c: [min(r["overhead"][c] for r in repeats), max(r["overhead"][c] for r in repeats)]
              for c in recorded}
    print()
    print(f"{args.env} obs={args.obs} {args.render_size}px, {args.repeats} repeats x {repeats[0]['steps_per_config']} steps")
    print(f"{'config':<8}{'median steps/s':>16}{'median overhead':>18}{'min..max overhead':>22}{'CPU overhead':>16}"
          f"{'drain ms':>10}")
    print(f"{'bare':<8}{median_sps['bare']:>16.0f}{'-':>18}{'-':>22}")
    for c in recorded:
        print(f"{c:<8}{median_sps[c]:>16.0f}{median_overhead[c]:>18.1%}"
              f"{f'{spread[c][0]:.1%}..{spread[c][1]:.1%}':>22}{median_cpu_overhead[c]:>16.1%}"
              f"{median_drain_ms[c]:>10.1f}")
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    target_met = median_overhead["async"] <= 0.10 if "async" in median_overhead else None
    if target_met is not None:
        print(f"target async overhead <= 10%: {'met' if target_met else 'MISSED'}")
    result = {
        "benchmark": "collect_overhead",
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "no_save")},
        "versions": versions(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "median_steps_per_s": median_sps,
        "median_overhead": median_overhead,
        "median_cpu_overhead": median_cpu_overhead,
        "median_drain_ms": median_drain_ms,
        "overhead_min_max": spread,
        "target_async_overhead": 0.10,
        "target_met": target_met,
        "repeats": repeats,
    }
    if not args.no_save:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0 if target_met is not False else 1


if __name__ == "__main__":
    sys.exit(main())
