"""ManiSkill ids through ``envs.make`` and the scripted ManiSkill experts (CPU sim + lavapipe).

Every test is marked ``maniskill``; ``tests/conftest.py`` skips them (with the reason) when
ManiSkill or a Vulkan device is missing, except under ``CI=true``.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from tests.episodes import rollout

pytestmark = [
    pytest.mark.maniskill,
    # ManiSkill 3.0.1 calls np.isnan on a torch tensor in every step (its code, not ours).
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def pick_state():
    return envs.make("PickCube-v1", obs="state", seed=0)


@pytest.fixture(scope="module")
def pick_state_rgb():
    # Building the first camera env compiles shaders (~5 s on CPU): build it once per module.
    return envs.make("PickCube-v1", obs="state+rgb", render_size=48, seed=0)


def test_pick_cube_state_mode_contract(pick_state) -> None:
    env = pick_state
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (42,), np.float32)
    assert env.unwrapped.control_mode == "pd_ee_delta_pos"
    # One CPU sim per env (platform notes): parallelism comes from processes, not a batched sim.
    assert env.unwrapped.num_envs == 1 and env.unwrapped.backend.sim_backend == "physx_cpu"
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (42,)
    assert info["success"] is False and info["is_success"] is False
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert type(info["success"]) is bool and info["is_success"] is info["success"]
    assert 0.0 <= reward <= 1.0  # normalized_dense
    sb3_check_env(env)


def test_pick_cube_state_rgb_mode(pick_state_rgb, pick_state) -> None:
    env = pick_state_rgb
    assert isinstance(env.observation_space, spaces.Dict)
    assert set(env.observation_space.spaces) == {"state", "rgb"}
    assert env.observation_space["rgb"] == spaces.Box(0, 255, (48, 48, 3), np.uint8)
    obs, info = env.reset(seed=3)
    assert obs["rgb"].dtype == np.uint8 and obs["rgb"].shape == (48, 48, 3)
    assert obs["rgb"].std() > 5  # a real picture, not a blank frame
    # the state half is the full state-mode vector (privileged cube/goal poses included)
    state_obs, _ = pick_state.reset(seed=3)
    np.testing.assert_allclose(obs["state"], state_obs, atol=1e-6)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and type(info["success"]) is bool
    sb3_check_env(env)


def test_pick_cube_rgb_mode_and_conflicting_kwargs() -> None:
    env = envs.make("PickCube-v1", obs="rgb", render_size=32, max_episode_steps=3, seed=0)
    assert env.observation_space == spaces.Box(0, 255, (32, 32, 3), np.uint8)
    steps = rollout(env, lambda obs: env.action_space.sample())
    assert len(steps) - 1 == 3 and steps[-1][3] is True
    assert all(s[0].shape == (32, 32, 3) and s[0].dtype == np.uint8 for s in steps)
    with pytest.raises(ValueError, match="obs_mode"):
        envs.make("PickCube-v1", obs_mode="rgb")


def test_pick_cube_reports_success_and_terminates_on_it(pick_state) -> None:
    env = pick_state
    steps = rollout(env, envs.expert_policy(env))
    _, reward, terminated, truncated, info = steps[-1]
    assert info["success"] is True and info["is_success"] is True
    assert terminated is True and truncated is False
    assert not any(s[4]["success"] for s in steps[:-1])

    sparse = envs.make("PickCube-v1", reward="sparse", ignore_terminations=True, max_episode_steps=35, seed=0)
    steps = rollout(sparse, envs.expert_policy(sparse))
    assert len(steps) - 1 == 35 and steps[-1][3] is True and not any(s[2] for s in steps[1:])
    assert all(s[1] == (1.0 if s[4]["success"] else 0.0) for s in steps[1:])
    assert any(s[4]["success"] for s in steps[1:])


def test_same_seed_same_trajectory() -> None:
    def trajectory(seed: int) -> np.ndarray:
        env = envs.make("PushCube-v1", seed=seed, max_episode_steps=5)
        out = []
        for _ in range(2):  # the second, unseeded episode must be reproducible too
            out += [s[0] for s in rollout(env, lambda obs: env.action_space.sample())]
        return np.stack(out)

    a, b, c = trajectory(11), trajectory(11), trajectory(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def success_rate(env, policy, episodes: int) -> float:
    return float(np.mean([rollout(env, policy)[-1][4]["success"] for _ in range(episodes)]))


@pytest.mark.parametrize("env_id", ["PickCube-v1", "PushCube-v1"])
def test_scripted_expert_succeeds_and_noise_hurts(env_id: str) -> None:
    env = envs.make(env_id, obs="state", seed=2024)
    clean = success_rate(env, envs.expert_policy(env, noise=0.0, seed=0), episodes=50)
    assert clean >= 0.8, f"{env_id} expert success {clean:.2f}"
    noisy = success_rate(env, envs.expert_policy(env, noise=0.6, seed=0), episodes=20)
    assert noisy <= clean - 0.4, f"{env_id}: noise 0.6 still succeeds {noisy:.2f}"


def test_expert_reads_privileged_state_in_image_modes(pick_state_rgb) -> None:
    env = pick_state_rgb
    steps = rollout(env, envs.expert_policy(env))
    assert steps[-1][4]["success"] is True


def test_expert_needs_ee_delta_pos_control() -> None:
    env = envs.make("PushCube-v1", control_mode="pd_joint_delta_pos")
    with pytest.raises(ValueError, match="pd_ee_delta_pos"):
        envs.expert_policy(env)


def test_workspace_camera_view_magnifies_the_cube() -> None:
    def red_pixels(view: str | None) -> int:
        env = envs.make("PickCube-v1", obs="rgb", render_size=64, seed=0, **({"camera_view": view} if view else {}))
        rgb, _ = env.reset(seed=3)
        env.close()
        r, g, b = (rgb[..., i].astype(int) for i in range(3))
        return int(((r > 120) & (g < 60) & (b < 60)).sum())  # the red cube

    default, workspace = red_pixels(None), red_pixels("workspace")
    assert workspace >= 4 * max(default, 1), (default, workspace)
    with pytest.raises(ValueError, match=r"camera_view='top' is not known; choose one of \['side', 'workspace'\]"):
        envs.make("PickCube-v1", obs="rgb", camera_view="top")
