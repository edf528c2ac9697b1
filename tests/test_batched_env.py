"""The torch-batched PointReach-v0 and PointKeyDoor-v0: the per-env envs step for step, ManiSkill's batched conventions,
and the torch reward wrappers on it agreeing with their per-env twins."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.batched import BatchedPointKeyDoor, BatchedPointReach
from reward_wrappers import PBRS
from reward_wrappers.torch_batched import TorchPBRS

N, STEPS, SEED = 4, 160, 7


def actions(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.3, 1.3, (STEPS, N, 2)).astype(np.float32)  # some out of bounds
    a[5, 0] = np.nan  # NaN: no motion, in both
    return a


def per_env_rollouts(make, acts: np.ndarray) -> list[list[tuple]]:
    """Each env alone, reset by hand after it ends: (obs, reward, terminated, truncated, success)."""
    out = []
    for i in range(N):
        env, records = make(), []
        obs, _ = env.reset(seed=SEED + i)
        for t in range(STEPS):
            obs, reward, terminated, truncated, info = env.step(acts[t, i])
            records.append((obs, reward, terminated, truncated, info["success"], info))
            if terminated or truncated:
                obs, _ = env.reset()
        out.append(records)
    return out


def expert_actions(env_id: str, noise: float = 0.3) -> np.ndarray:
    """Actions of a noisy expert on each env alone, reset as :func:`per_env_rollouts` resets: replayed,
    they reach the key and the door, which random actions almost never do."""
    acts = np.zeros((STEPS, N, 2), np.float32)
    for i in range(N):
        env = envs.make(env_id)
        policy = envs.expert_policy(env, noise=noise, seed=i)
        obs, _ = env.reset(seed=SEED + i)
        for t in range(STEPS):
            acts[t, i] = policy(obs)
            obs, _, terminated, truncated, _ = env.step(acts[t, i])
            if terminated or truncated:
                obs, _ = env.reset()
    return acts


CASES = {"reach-dense": ("PointReach-v0", "dense", BatchedPointReach, None),
         "reach-sparse": ("PointReach-v0", "sparse", BatchedPointReach, None),
         "keydoor-dense": ("PointKeyDoor-v0", "dense", BatchedPointKeyDoor, "expert"),
         "keydoor-sparse": ("PointKeyDoor-v0", "sparse", BatchedPointKeyDoor, "expert")}


@pytest.mark.parametrize("case", list(CASES))
def test_batched_env_is_the_per_env_env_step_for_step(case: str) -> None:
    env_id, reward, batched, policy = CASES[case]
    acts = actions() if policy is None else expert_actions(env_id)
    expected = per_env_rollouts(lambda: envs.make(env_id, reward=reward), acts)
    env = batched(N, reward_mode=reward, max_episode_steps=gym.spec(env_id).max_episode_steps)
    obs, _ = env.reset(seed=SEED)
    episodes_ended = successes = 0
    for t in range(STEPS):
        obs, rewards, terminated, truncated, info = env.step(torch.as_tensor(acts[t]))
        for i in range(N):
            want_obs, want_reward, want_term, want_trunc, want_success, _ = expected[i][t]
            done = bool(terminated[i] | truncated[i])
            got_obs = info["final_observation"][i] if done else obs[i]  # SAME_STEP: the last frame is in info
            assert np.allclose(got_obs.numpy(), want_obs, atol=1e-6), (t, i)
            assert rewards[i].item() == pytest.approx(want_reward, abs=1e-6)
            assert (bool(terminated[i]), bool(truncated[i])) == (want_term, want_trunc), (t, i)
            source = info["final_info"] if done else info
            assert bool(source["success"][i]) == want_success
            if "has_key" in expected[i][t][5]:
                assert bool(source["has_key"][i]) == expected[i][t][5]["has_key"], (t, i)
            episodes_ended += done
            successes += want_success
    assert episodes_ended > N  # autoresets happened
    assert policy is None or successes > N  # the expert's episodes went through both stages


def test_partial_reset_and_bad_arguments() -> None:
    env = BatchedPointReach(3)
    first, _ = env.reset(seed=0)
    moved, *_ = env.step(torch.ones(3, 2))
    obs, _ = env.reset(options={"env_idx": torch.tensor([1])})
    assert torch.equal(obs[[0, 2]], moved[[0, 2]])  # the others keep their state
    assert torch.equal(obs[1, 2:4], torch.zeros(2)) and not torch.equal(obs[1], first[1])  # env 1: its next episode, at rest
    with pytest.raises(ValueError, match="reward_mode"):
        BatchedPointReach(2, reward_mode="shaped")


def test_torch_pbrs_on_the_batched_env_pays_what_per_env_pbrs_pays() -> None:
    acts, gamma = actions(1), 0.9

    def phi(batch):  # closeness to the goal, a potential of the state alone
        s = batch["state"]
        return -((s[:, 0] - s[:, 4]) ** 2 + (s[:, 1] - s[:, 5]) ** 2) ** 0.5

    expected = per_env_rollouts(lambda: PBRS(envs.make("PointReach-v0"), phi, gamma=gamma), acts)
    env = TorchPBRS(BatchedPointReach(N), phi, gamma=gamma)
    env.reset(seed=SEED)
    for t in range(STEPS):
        _, rewards, _, _, info = env.step(torch.as_tensor(acts[t]))
        for i in range(N):
            assert rewards[i].item() == pytest.approx(expected[i][t][1], abs=1e-5), (t, i)
            assert info["shaping_reward"][i].item() == pytest.approx(expected[i][t][5]["shaping_reward"], abs=1e-5)


def test_sb3_adapter_matches_sb3s_own_vec_env() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.batched_vec import TorchToSB3VecEnv

    acts = actions(2)
    batched = TorchToSB3VecEnv(BatchedPointReach(N))
    reference = DummyVecEnv([lambda: envs.make("PointReach-v0") for _ in range(N)])
    batched.seed(SEED), reference.seed(SEED)
    assert np.allclose(batched.reset(), reference.reset(), atol=1e-6)
    ended = 0
    for t in range(STEPS):
        a = np.nan_to_num(acts[t])  # SB3's DummyVecEnv passes NaN through the same way; keep the check about endings
        obs, rewards, dones, infos = batched.step(a)
        want_obs, want_rewards, want_dones, want_infos = reference.step(a)
        assert np.allclose(obs, want_obs, atol=1e-6) and np.allclose(rewards, want_rewards, atol=1e-6)
        assert np.array_equal(dones, want_dones)
        for i in np.flatnonzero(dones):
            ended += 1
            assert np.allclose(infos[i]["terminal_observation"], want_infos[i]["terminal_observation"], atol=1e-6)
            assert infos[i]["TimeLimit.truncated"] == want_infos[i].get("TimeLimit.truncated", False)
            assert infos[i]["is_success"] == want_infos[i]["is_success"]
    assert ended > N


def test_train_agent_on_the_batched_env(tmp_path) -> None:
    from agents.cli import main

    assert main(["train-agent", "--env", "PointReach-v0", "--n-envs", "32", "--batched-device", "cpu", "--steps", "2048",
                 "--algo", "ppo", "--eval-freq", "2048", "--eval-episodes", "2", "--logdir", str(tmp_path / "run"),
                 "--algo-kwargs", '{"n_steps": 32, "batch_size": 256}']) == 0
    assert (tmp_path / "run" / "eval.json").is_file()
    with pytest.raises(ValueError, match="state observations"):
        main(["train-agent", "--env", "PointReach-v0", "--policy-obs", "rgb", "--batched-device", "cpu", "--steps", "64",
              "--logdir", str(tmp_path / "rgb")])


def test_batched_device_refuses_what_it_cannot_do(tmp_path) -> None:
    from agents.train import TrainConfig

    with pytest.raises(ValueError, match="--collect"):
        TrainConfig(env="PointReach-v0", batched_device="cpu", collect=str(tmp_path / "buffers"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TrainConfig(env="PointReach-v0", batched_device="cuda")


def test_sb3_adapter_keeps_each_envs_reset_info() -> None:
    from agents.batched_vec import TorchToSB3VecEnv

    venv = TorchToSB3VecEnv(BatchedPointKeyDoor(N))
    venv.seed(SEED)
    venv.reset()
    assert [info["has_key"] for info in venv.reset_infos] == [False] * N and all("success" in i for i in venv.reset_infos)
    acts = expert_actions("PointKeyDoor-v0")
    for t in range(STEPS):
        venv.step(acts[t])
        # restarts get the new episode's reset info, not the final one (which holds the key on success)
        assert not any(info["has_key"] or info["success"] for info in venv.reset_infos)
