"""Where one env step of pixel-reward SAC goes on a CPU: simulation, rendering, reward model, SAC update.

Each part is timed alone, in this process, one torch thread (as the training runs): the env with
state observations (simulation), the same env with ``state+rgb`` (simulation + rendering; rendering
is the difference), the reward model's batched forward over ``--n-envs`` frames plus the reward
wrapper around it (divided by ``--n-envs``: one batched call per vector step), and SAC gradient
steps (``gradient_steps`` per vector step, divided by ``--n-envs``). Medians over ``--repeats``.

    python benchmarks/pixel_step_cost.py --env PushCube-v1 --classifier /tmp/pixels_PushCube-v1/rgb.pt \
        --out benchmarks/results/pushcube_pixels/step_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch


def _time_steps(env, steps: int) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PushCube-v1")
    parser.add_argument("--classifier", default=None, help="reward checkpoint (default: an untrained CNN on 64x64 rgb)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--gradient-steps", type=int, default=1, help="SAC gradient steps per vector step")
    parser.add_argument("--steps", type=int, default=200, help="env steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import envs
    from agents.defaults import default_hyperparameters, sb3_hyperparameters
    from reward_wrappers import load_reward_model
    from reward_wrappers.models.base import InputSpec, ModelSpec
    from reward_wrappers.models.networks import TorchRewardModel
    from reward_wrappers.sb3 import VecLearnedReward
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    state_env = envs.make(args.env, obs="state", seed=0, ignore_terminations=True)
    pixel_env = envs.make(args.env, obs="state+rgb", render_size=64, seed=0, ignore_terminations=True)
    if args.classifier:
        model = load_reward_model(args.classifier)
    else:
        model = TorchRewardModel.build(ModelSpec({"rgb": InputSpec((64, 64, 3), "uint8")}))
    frames = np.stack([pixel_env.reset(seed=i)[0]["rgb"] for i in range(args.n_envs)])

    # The wrapper around the model, on a vector env whose own step costs nothing.
    class Replay(DummyVecEnv):
        def step_wait(self):  # noqa: ANN202
            return {"rgb": frames, "state": np.zeros((args.n_envs, 1), np.float32)}, np.zeros(args.n_envs), \
                np.zeros(args.n_envs, bool), [{} for _ in range(args.n_envs)]

    import gymnasium as gym

    space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                             "state": gym.spaces.Box(-1, 1, (1,), np.float32)})

    class Null(gym.Env):
        observation_space = space
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    wrapped = VecLearnedReward(Replay([Null] * args.n_envs), model)
    hyper = sb3_hyperparameters(default_hyperparameters("sac", args.env))
    hyper.update(gradient_steps=args.gradient_steps, learning_starts=0)
    agent = SAC("MlpPolicy", state_env, device="cpu", seed=0, **hyper)
    for _ in range(hyper["batch_size"] * 2):
        obs = state_env.observation_space.sample()
        agent.replay_buffer.add(obs, obs, state_env.action_space.sample(), np.zeros(1), np.zeros(1), [{}])
    agent._logger = __import__("stable_baselines3.common.logger", fromlist=["configure"]).configure(None, [""])

    rows: dict[str, list[float]] = {"simulation": [], "simulation + rendering": [], "reward model + wrapper": [],
                                    "SAC update": []}
    for _ in range(args.repeats):
        rows["simulation"].append(_time_steps(state_env, args.steps))
        rows["simulation + rendering"].append(_time_steps(pixel_env, args.steps))
        start = time.perf_counter()
        for _ in range(args.steps // args.n_envs):
            wrapped.step_wait()
        rows["reward model + wrapper"].append((time.perf_counter() - start) / (args.steps // args.n_envs) / args.n_envs)
        start = time.perf_counter()
        agent.train(gradient_steps=args.gradient_steps * max(1, args.steps // args.n_envs // 10), batch_size=hyper["batch_size"])
        rows["SAC update"].append((time.perf_counter() - start) / max(1, args.steps // args.n_envs // 10) / args.n_envs)
    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    parts = {"simulation": med["simulation"], "rendering": med["simulation + rendering"] - med["simulation"],
             "reward model + wrapper": med["reward model + wrapper"], "SAC update": med["SAC update"]}
    total = sum(parts.values())
    print(f"{args.env}, one env step of pixel-reward SAC ({args.n_envs} envs, {args.gradient_steps} gradient step(s) "
          f"per vector step), ms, medians of {args.repeats}:")
    print("| part | ms per env step | share |\n|---|---|---|")
    for name, ms in parts.items():
        print(f"| {name} | {ms:.3f} | {100 * ms / total:.1f} % |")
    if args.out:
        from agents.train import package_versions

        payload = {"command": "python " + " ".join(__import__("sys").argv), "ms_per_env_step": parts,
                   "reward_share": parts["reward model + wrapper"] / total, "raw_ms": rows, "versions": package_versions(),
                   "hardware": {"machine": platform.machine(), "cpus": os.cpu_count()}, "load_average_at_end": os.getloadavg()}
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
