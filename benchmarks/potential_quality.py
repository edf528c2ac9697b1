"""How well a shaping potential orders the states an exploring agent visits (no RL needed).

A potential helps PBRS only where the agent goes. Early in training that is far from the
demonstrations a model was fitted on, so held-out figures on expert episodes say little. This
script rolls out policies that leave the expert's states (random actions, the scripted expert
with heavy action noise) and measures, for each potential, the Spearman rank correlation of
``Phi(s')`` with the env's dense reward at ``s'``. On the built-in envs that reward is minus the
remaining path to success, so it is the ordering a potential should reproduce:

* ``pooled``: over every visited state of every episode (does Phi order states across episodes?);
* ``within``: median over episodes of the per-episode correlation (does Phi move with progress
  along one episode?). Episodes whose Phi or reward is constant are left out of the median.

A potential is given as ``train-agent --pbrs`` takes it (a checkpoint, or ``fn:MODULE:FUNCTION``
for a hand-written one such as the env's own, the reference row), with a bench condition's
``@process-goal=`` and ``@process-override=``. It is read through the per-env
:class:`~reward_wrappers.pbrs.PBRS` wrapper exactly as training applies it (a process potential
with its goal, gating and per-episode state).

Command (the results committed in ``benchmarks/results/process_reward/potential_quality.json``)::

    python benchmarks/potential_quality.py --env PointKeyDoor-v0 \\
        --potentials progress=kd2_progress.pt \\
        'process=kd_process.pt@process-goal=fn:envs.point_key_door:goal_state' \\
        'process_ungated=kd_process.pt@process-goal=fn:envs.point_key_door:goal_state@process-override={"gating":"none"}'
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from agents.compare import Condition  # noqa: E402
from agents.preflight import load_pbrs  # noqa: E402
from collectors.atomic import write_json_atomic  # noqa: E402
from reward_wrappers import PBRS  # noqa: E402
from trainers.metrics import spearman  # noqa: E402


def parse_potential(text: str) -> tuple[str, Any]:
    """``NAME=SOURCE[@process-goal=SOURCE][@process-override=JSON]`` -> (name, potential); SOURCE
    is what ``train-agent --pbrs`` takes (a checkpoint or ``fn:MODULE:FUNCTION``), the options
    are those of a bench condition."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise SystemExit(f"--potentials {text!r}: expected NAME=SOURCE[@process-goal=SOURCE][@process-override=JSON]")
    try:
        condition = Condition.parse("sparse+pbrs:" + rest)
    except ValueError as exc:
        raise SystemExit(f"--potentials {text!r}: {exc}") from None
    options = dict(condition.options)
    unused = set(options) - {"process_goal", "process_override"}
    if unused or condition.gamma is not None:
        raise SystemExit(f"--potentials {text!r}: only @process-goal= and @process-override= apply here")
    cfg = SimpleNamespace(pbrs=condition.pbrs, process_goal=options.get("process_goal"),
                          process_override=options.get("process_override"))
    return name, load_pbrs(cfg)


def rollout_policy(env: Any, name: str, episode: int) -> Callable[[Any], Any]:
    """``random`` or ``expert:NOISE`` (the scripted expert with that action noise)."""
    if name == "random":
        env.action_space.seed(episode)
        return lambda obs: env.action_space.sample()
    kind, _, noise = name.partition(":")
    if kind != "expert" or not noise:
        raise SystemExit(f"--policies {name!r}: expected random or expert:NOISE")
    return envs.expert_policy(env, noise=float(noise), seed=episode)


def measure(env_id: str, potential: Any, policy: str, episodes: int, seed: int, gamma: float) -> dict[str, float]:
    env = PBRS(envs.make(env_id, obs="state", reward="dense", seed=seed), potential, gamma=gamma)
    phis, rewards, within = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        act = rollout_policy(env, policy, seed + episode)
        ep_phi, ep_reward = [], []
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(act(obs))
            ep_phi.append(float(info["potential"])), ep_reward.append(float(info["env_reward"]))
        phis += ep_phi
        rewards += ep_reward
        if np.ptp(ep_phi) > 0 and np.ptp(ep_reward) > 0:
            within.append(spearman(np.array(ep_phi), np.array(ep_reward)))
    env.close()
    return {"pooled": round(float(spearman(np.array(phis), np.array(rewards))), 3),
            "within": round(float(np.median(within)), 3) if within else float("nan"),
            "episodes_in_within": len(within), "states": len(phis)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PointKeyDoor-v0", help="a built-in env id (its dense reward is the reference)")
    parser.add_argument("--potentials", nargs="+", required=True,
                        metavar="NAME=SOURCE[@process-goal=SOURCE][@process-override=JSON]",
                        help="SOURCE: a checkpoint or fn:MODULE:FUNCTION, as train-agent --pbrs takes")
    parser.add_argument("--policies", nargs="+", default=["random", "expert:0.5", "expert:1.0"])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--gamma", type=float, default=0.95, help="only for the PBRS wrapper; the figures do not use it")
    parser.add_argument("--seed", type=int, default=1000, help="first episode seed (away from training seeds)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args()

    rows: dict[str, dict[str, Any]] = {}
    for spec in args.potentials:
        name, potential = parse_potential(spec)
        rows[name] = {policy: measure(args.env, potential, policy, args.episodes,
                                      args.seed, args.gamma)
                      for policy in args.policies}
        print(name, json.dumps(rows[name]), flush=True)
    if args.out:
        import torch

        write_json_atomic(pathlib.Path(args.out), {
            "command": "python " + shlex.join(sys.argv), "env": args.env, "episodes": args.episodes,
            "results": rows,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
