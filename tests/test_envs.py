"""Built-in envs, ``envs.make`` and the built-in experts (no ManiSkill needed)."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.point_key_door import DOOR_LOCKED_COLOUR, DOOR_OPEN_COLOUR, KEY_COLOUR
from envs.point_reach import GOAL_COLOUR
from tests.episodes import rollout

OBS_MODES = ("state", "rgb", "state+rgb")
BUILTINS = envs.BUILTIN_ENV_IDS
LIMITS = {"PointReach-v0": 50, "PointKeyDoor-v0": 100}


def success_rate(env_id: str, noise: float, episodes: int = 50, **make_kwargs) -> float:
    env = envs.make(env_id, seed=123, **make_kwargs)
    policy = envs.expert_policy(env, noise=noise, seed=7)
    return float(np.mean([rollout(env, policy)[-1][4]["success"] for _ in range(episodes)]))


def flat(obs) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k], np.float64).ravel() for k in sorted(obs)])
    return np.asarray(obs, np.float64).ravel()


def colour_present(img: np.ndarray, colour) -> bool:
    return bool(np.all(img == np.asarray(colour, np.uint8), axis=-1).any())


# ------------------------------------------------------------------ registration and checkers
def test_exports_and_gym_registration() -> None:
    assert set(BUILTINS) == {"PointReach-v0", "PointKeyDoor-v0"}
    for name in ("make", "expert_policy", "obs_keys", "obs_to_dict", "key_spaces", "is_image_space"):
        assert callable(getattr(envs, name))
    for env_id in BUILTINS:
        env = gym.make(env_id)
        assert env.spec.max_episode_steps == LIMITS[env_id]
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and info["success"] is False


@pytest.mark.parametrize("env_id", BUILTINS)
@pytest.mark.parametrize("obs", OBS_MODES)
def test_gymnasium_and_sb3_check_env(env_id: str, obs: str) -> None:
    env = envs.make(env_id, obs=obs, render_size=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning is a failure
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
    # The whole stack envs.make returns, including the close check that rebuilds it from its spec.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        gym_check_env(env, skip_render_check=True)
    rendering = gym.make(env_id, obs_mode=obs, render_mode="rgb_array")
    gym_check_env(rendering.unwrapped)  # includes the render checks
    rendering.reset(seed=0)
    assert rendering.render().shape == (64, 64, 3)


@pytest.mark.parametrize("env_id", BUILTINS)
def test_observation_spaces_follow_key_convention(env_id: str) -> None:
    dims = {"PointReach-v0": 6, "PointKeyDoor-v0": 9}[env_id]
    state = envs.make(env_id, obs="state").observation_space
    rgb = envs.make(env_id, obs="rgb", render_size=40).observation_space
    both = envs.make(env_id, obs="state+rgb", render_size=40).observation_space
    assert state == gym.spaces.Box(-1, 1, (dims,), np.float32)
    assert rgb == gym.spaces.Box(0, 255, (40, 40, 3), np.uint8)
    assert isinstance(both, gym.spaces.Dict) and both["state"] == state and both["rgb"] == rgb
    assert envs.obs_keys(state) == ("state",) and envs.obs_keys(rgb) == ("rgb",)
    assert set(envs.obs_keys(both)) == {"state", "rgb"}


def test_multi_input_policy_accepts_state_rgb() -> None:
    from stable_baselines3 import PPO

    env = envs.make("PointReach-v0", obs="state+rgb", seed=0)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)


# ------------------------------------------------------------------ seeding
@pytest.mark.parametrize("env_id", BUILTINS)
def test_same_seed_same_trajectory_different_seed_differs(env_id: str) -> None:
    def trajectory(seed: int) -> list:
        env = envs.make(env_id, obs="state+rgb", seed=seed, render_size=32)
        out = []
        for _ in range(2):  # the second episode continues the seeded stream
            steps = rollout(env, lambda obs: env.action_space.sample())
            out += [(flat(o), r, te, tr, sorted(i.items())) for o, r, te, tr, i in steps]
        return out

    a, b, c = trajectory(3), trajectory(3), trajectory(4)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]
    assert len(a) != len(c) or any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_explicit_reset_seed_overrides_and_episodes_vary() -> None:
    env = envs.make("PointReach-v0", seed=0)
    first, _ = env.reset()
    second, _ = env.reset()
    assert not np.array_equal(first, second)  # no re-seeding on later resets
    again, _ = env.reset(seed=0)
    np.testing.assert_array_equal(first, again)


# ------------------------------------------------------------------ rewards, termination, limits
@pytest.mark.parametrize("env_id", BUILTINS)
def test_sparse_reward_is_one_exactly_on_success_steps(env_id: str) -> None:
    env = envs.make(env_id, reward="sparse", ignore_terminations=True, seed=0)
    policy = envs.expert_policy(env, noise=0.3, seed=0)
    seen = set()
    for _ in range(5):
        for _, reward, terminated, _, info in rollout(env, policy)[1:]:
            assert type(reward) is float and reward == (1.0 if info["success"] else 0.0)
            assert terminated is False
            seen.add(info["success"])
    assert seen == {True, False}


@pytest.mark.parametrize("env_id", BUILTINS)
def test_dense_reward_improves_towards_success(env_id: str) -> None:
    env = envs.make(env_id, seed=5)
    steps = rollout(env, envs.expert_policy(env))
    rewards = [s[1] for s in steps[1:]]
    assert all(type(r) is float and -1.0 <= r <= 0.0 for r in rewards)
    assert steps[-1][4]["success"] and rewards[-1] > rewards[0] + 0.1


@pytest.mark.parametrize("env_id", BUILTINS)
def test_terminates_on_success_unless_ignored(env_id: str) -> None:
    env = envs.make(env_id, seed=1)
    steps = rollout(env, envs.expert_policy(env))
    for _, _, terminated, truncated, info in steps[1:]:
        assert terminated is info["success"] and truncated is False
        assert info["is_success"] is info["success"]
    assert steps[-1][2] is True

    env = envs.make(env_id, seed=1, ignore_terminations=True)
    steps = rollout(env, envs.expert_policy(env))
    assert len(steps) - 1 == LIMITS[env_id]  # runs to the time limit
    assert not any(s[2] for s in steps[1:]) and steps[-1][3] is True
    assert steps[-1][4]["success"]  # the expert holds the goal after reaching it


@pytest.mark.parametrize("env_id", BUILTINS)
def test_time_limit_truncates_and_can_be_overridden(env_id: str) -> None:
    still = lambda obs: np.zeros(2, np.float32)  # noqa: E731 - never reaches anything
    steps = rollout(envs.make(env_id, seed=0), still)
    assert len(steps) - 1 == LIMITS[env_id]
    assert [s[3] for s in steps[1:]] == [False] * (LIMITS[env_id] - 1) + [True]
    assert not any(s[2] for s in steps[1:])
    steps = rollout(envs.make(env_id, seed=0, max_episode_steps=7), still)
    assert len(steps) - 1 == 7 and steps[-1][3] is True


def test_info_flags_on_reset_and_step_are_python_bools() -> None:
    for env_id in BUILTINS:
        env = envs.make(env_id, seed=0)
        _, info = env.reset()
        assert info["success"] is False and info["is_success"] is False
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
        assert type(info["success"]) is bool and info["is_success"] is info["success"]


def test_out_of_range_and_nan_actions_are_bounded() -> None:
    env = envs.make("PointReach-v0", seed=0)
    env.reset()
    for action in ([100.0, -100.0], [np.nan, 0.5]):
        obs, *_ = env.step(np.array(action, np.float32))
        assert np.all(np.isfinite(obs)) and np.all(np.abs(obs) <= 1.0)


# ------------------------------------------------------------------ two-stage task
def test_key_door_stage_flags_are_consistent() -> None:
    env = envs.make("PointKeyDoor-v0", obs="state+rgb", seed=2, ignore_terminations=True)
    policy = envs.expert_policy(env, noise=0.2, seed=2)
    saw_key_without_success = saw_success = False
    for _ in range(6):
        had_key = False
        for obs, _, _, _, info in rollout(env, policy):
            assert type(info["has_key"]) is bool
            assert not info["success"] or info["has_key"]  # success implies has_key
            assert not had_key or info["has_key"]  # the key is never lost in an episode
            had_key = info["has_key"]
            assert obs["state"][-1] == float(info["has_key"])
            img = obs["rgb"]
            assert colour_present(img, KEY_COLOUR) is (not info["has_key"])
            door = DOOR_OPEN_COLOUR if info["has_key"] else DOOR_LOCKED_COLOUR
            assert colour_present(img, door)
            saw_key_without_success |= info["has_key"] and not info["success"]
            saw_success |= info["success"]
    assert saw_key_without_success and saw_success


def test_point_reach_image_shows_agent_and_goal() -> None:
    env = envs.make("PointReach-v0", obs="rgb", render_size=96, seed=0)
    img, _ = env.reset()
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert colour_present(img, GOAL_COLOUR) and colour_present(img, (230, 40, 40))
    # the goal disk is drawn where the state says it is
    base = env.unwrapped
    row = int((1 - base.gy) / 2 * 96)
    col = int((base.gx + 1) / 2 * 96)
    assert tuple(img[row, col]) == GOAL_COLOUR


def test_non_square_camera_draws_where_the_state_says() -> None:
    # A 24x40 (height x width) camera: the arena is stretched to fill it; the goal lands at the
    # pixel its coordinates map to on each axis, and the expert still succeeds from pixels alone.
    env = envs.make("PointReach-v0", obs="state+rgb", render_size=(24, 40), seed=3)
    obs, _ = env.reset()
    assert env.observation_space["rgb"].shape == obs["rgb"].shape == (24, 40, 3)
    base = env.unwrapped
    row, col = int((1 - base.gy) / 2 * 24), int((base.gx + 1) / 2 * 40)
    assert tuple(obs["rgb"][row, col]) == GOAL_COLOUR
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*minimal resolution.*")  # SB3's CnnPolicy note; we use our own encoders
        sb3_check_env(env)
    assert envs.env_spec("PointReach-v0", render_size=(24, 40))["render_size"] == [24, 40]
    assert envs.env_spec("PointReach-v0", render_size=(32, 32))["render_size"] == 32
    pixels = envs.make("PointReach-v0", obs="rgb", render_size=[24, 40], seed=3)
    steps = rollout(pixels, envs.expert_policy(pixels))
    assert steps[-1][0].shape == (24, 40, 3) and steps[-1][4]["success"]


@pytest.mark.parametrize("bad", [(4, 40), 0, (24,), "24x40", (24.0, 40), True])
def test_render_size_rejects_what_is_not_a_size(bad) -> None:
    with pytest.raises(ValueError, match="render_size"):
        envs.make("PointReach-v0", obs="rgb", render_size=bad)


def test_render_size_option_parses_height_by_width() -> None:
    import argparse

    from envs.options import parse_render_size

    assert parse_render_size("64") == 64 and parse_render_size("24X40") == (24, 40)
    for bad in ("24x", "7", "24x40x3", "big"):
        with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH"):
            parse_render_size(bad)


# ------------------------------------------------------------------ experts
@pytest.mark.parametrize("env_id", BUILTINS)
def test_expert_succeeds_and_noise_produces_failures(env_id: str) -> None:
    clean = success_rate(env_id, noise=0.0)
    noisy = success_rate(env_id, noise=1.0)
    assert clean >= 0.9
    assert noisy <= clean - 0.5


def test_expert_works_from_images_and_is_deterministic() -> None:
    assert success_rate("PointKeyDoor-v0", noise=0.0, episodes=5, obs="rgb") == 1.0
    runs = []
    for _ in range(2):
        env = envs.make("PointReach-v0", seed=9)
        policy = envs.expert_policy(env, noise=0.5, seed=9)
        runs.append(np.stack([flat(s[0]) for s in rollout(env, policy)]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_expert_rejects_unknown_env_and_bad_noise() -> None:
    with pytest.raises(ValueError, match="PointReach-v0.*PickCube-v1"):
        envs.expert_policy(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="noise"):
        envs.expert_policy(envs.make("PointReach-v0"), noise=1.5)


# ------------------------------------------------------------------ make(): errors and other ids
def test_make_rejects_unknown_ids_and_modes() -> None:
    with pytest.raises(ValueError, match=r"PointReach-v0.*PointKeyDoor-v0(.|\n)*ManiSkill"):
        envs.make("NoSuchEnv-v9")
    with pytest.raises(ValueError, match="obs"):
        envs.make("PointReach-v0", obs="depth")
    with pytest.raises(ValueError, match="reward"):
        envs.make("PointReach-v0", reward="shaped")


def test_other_gymnasium_ids() -> None:
    env = envs.make("CartPole-v1", seed=0, max_episode_steps=5)
    obs, info = env.reset()
    assert obs.shape == (4,) and "success" not in info  # CartPole reports no success
    steps = rollout(env, lambda o: env.action_space.sample())
    assert len(steps) - 1 <= 5 and type(steps[-1][1]) is float
    with pytest.raises(RuntimeError, match="success"):
        sparse = envs.make("CartPole-v1", reward="sparse")
        sparse.reset(seed=0)
        sparse.step(0)
    with pytest.raises(ValueError, match="ignore_terminations"):
        envs.make("CartPole-v1", ignore_terminations=True)


def test_other_gymnasium_id_rendered_to_rgb_with_success() -> None:
    # A foreign id (not routed as a built-in) that renders and reports success.
    env_id = "RewardSwapTest/ForeignReach-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="envs.point_reach:PointReachEnv", max_episode_steps=50)
    env = envs.make(env_id, obs="state+rgb", render_size=40, reward="sparse", seed=0)
    assert env.observation_space["rgb"].shape == (40, 40, 3)
    sb3_check_env(env)
    wide = envs.make(env_id, obs="rgb", render_size=(24, 40), seed=0)  # resized render() frames, height x width
    assert wide.observation_space.shape == wide.reset()[0].shape == (24, 40, 3)
    steps = rollout(env, envs.expert_policy(env))
    assert steps[-1][4]["is_success"] is True and steps[-1][1] == 1.0
    assert all(s[1] == 0.0 for s in steps[1:-1])


# ------------------------------------------------------------------ speed and docs
def test_point_reach_state_mode_is_fast() -> None:
    env = envs.make("PointReach-v0", seed=0)
    env.reset()
    action = np.array([0.3, -0.2], np.float32)
    n = 5_000
    start = time.perf_counter()
    for _ in range(n):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    steps_per_s = n / (time.perf_counter() - start)
    assert steps_per_s >= 5_000, f"{steps_per_s:.0f} steps/s"


@pytest.mark.parametrize("env_id, potential", [("PointKeyDoor-v0", "envs.point_key_door:remaining_path_potential"),
                                               ("PointReach-v0", "envs.point_reach:distance_potential")])
def test_the_hand_written_potentials_are_one_plus_the_dense_reward_they_reach(env_id, potential):
    from reward_wrappers.models.base import import_function

    phi = import_function(potential, "test")
    env = envs.make(env_id, obs="state", reward="dense", seed=0)
    obs, _ = env.reset(seed=4)
    policy = envs.expert_policy(env, noise=0.0, seed=0)
    stages = set()
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        assert phi({"state": obs[None]})[0] == pytest.approx(1.0 + reward, abs=1e-6)
        stages.add(bool(info.get("has_key", True)))
        if terminated or truncated:
            break
    assert terminated and True in stages  # reached the goal (PointKeyDoor: with the key picked up on the way)
