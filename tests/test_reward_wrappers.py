"""Per-env reward wrappers: LearnedReward, PBRS, ProgressReward (issue 4).

Exactness tests use :class:`CountingEnv`, a deterministic tiny env whose observation encodes the
step count, so every reward can be recomputed by hand; the built-in ``PointReach-v0`` covers
both ``check_env``s and SB3 training. The vector twins are tested in
``test_reward_wrappers_vector.py``; both use the helpers of ``tests/reward_helpers.py``; the
models' numpy fast path and checkpoint safety are in ``test_reward_models.py``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FilterObservation, FlattenObservation, TimeLimit

import envs
from envs.dummy import CountingEnv
from reward_wrappers import (
    PBRS,
    InputSpec,
    LearnedReward,
    ModelSpec,
    ProgressReward,
    TorchRewardModel,
)
from reward_wrappers.models.base import sigmoid, window_indices

from tests.reward_helpers import (GAMMA, SpecModel, actions_for, always_positive_logit, check_telescoping, counting_env,
                                  logit_fn, phi_of, potential_fn, rollout, state_spec, window_fn)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------
# LearnedReward
# ----------------------------------------------------------------------------------------------
def test_learned_reward_output_kinds_from_the_reached_observation() -> None:
    acts = actions_for(12)
    for output in ("prob", "logit", "raw"):
        records = rollout(LearnedReward(counting_env(), logit_fn, output=output), acts, seed=3)
        for rec in records:
            if rec["reset"]:
                continue
            logit = float(logit_fn({"state": np.asarray(rec["obs"], np.float32)[None]})[0])
            expected = float(sigmoid(logit)) if output == "prob" else logit
            assert rec["reward"] == pytest.approx(expected, abs=1e-12)
            assert rec["info"]["learned_reward"] == pytest.approx(expected, abs=1e-12)
            assert isinstance(rec["reward"], float)


def test_learned_reward_binary_threshold_defaults_to_the_spec() -> None:
    model = SpecModel(state_spec(threshold=0.9), logit_fn)
    env = LearnedReward(counting_env(max_len=7, max_steps=7), model, output="binary")
    assert env.core.threshold == 0.9
    records = rollout(env, actions_for(20), seed=1)
    for rec in (r for r in records if not r["reset"]):
        p = float(sigmoid(logit_fn({"state": rec["obs"][None]})[0]))
        assert rec["reward"] == (1.0 if p > 0.9 else 0.0)
        assert rec["info"]["learned_success"] == (p > 0.9)
    explicit = LearnedReward(counting_env(), model, output="binary", threshold=0.2)
    assert explicit.core.threshold == 0.2
    assert LearnedReward(counting_env(), logit_fn, output="binary").core.threshold == 0.5


def test_learned_reward_modes_and_env_reward_recoverable() -> None:
    acts = actions_for(15)
    base = [r for r in rollout(counting_env(), acts, seed=2) if not r["reset"]]
    for mode, kwargs in [("replace", {}), ("add", {"model_weight": 2.0}), ("weighted", {"env_weight": 0.3, "model_weight": 0.7})]:
        recs = [r for r in rollout(LearnedReward(counting_env(), logit_fn, mode=mode, **kwargs), acts, seed=2) if not r["reset"]]
        for b, r in zip(base, recs):
            env_r, learned = r["info"]["env_reward"], r["info"]["learned_reward"]
            assert env_r == b["reward"]  # the env's own reward, recoverable from info
            expected = {
                "replace": learned,
                "add": env_r + 2.0 * learned,
                "weighted": 0.3 * env_r + 0.7 * learned,
            }[mode]
            assert r["reward"] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="env_weight is only used"):
        LearnedReward(counting_env(), logit_fn, mode="replace", env_weight=1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        LearnedReward(counting_env(), logit_fn, mode="sum")


def test_env_reward_survives_stacked_reward_wrappers() -> None:
    acts = actions_for(10)
    base = [r for r in rollout(counting_env(), acts, seed=4) if not r["reset"]]
    stacked = LearnedReward(PBRS(LearnedReward(counting_env(), logit_fn), potential_fn, gamma=GAMMA), logit_fn, mode="add")
    for b, r in zip(base, [r for r in rollout(stacked, acts, seed=4) if not r["reset"]]):
        assert r["info"]["env_reward"] == b["reward"]


def test_hold_steps_needs_consecutive_positive_frames_and_resets_per_episode() -> None:
    # logit > 0 from t = 3 on (x stays in [-1, 1] with zero actions): positive frames t = 3, 4, 5...
    model = lambda b: 10.0 * (b["state"][:, 0] - 2.5)  # noqa: E731
    zero = np.zeros((30, 1), np.float32)
    for k in (1, 2, 3):
        env = LearnedReward(counting_env(max_len=7, max_steps=6, terminate=False), model, output="binary", hold_steps=k)
        records = rollout(env, zero, seed=0)
        for rec in (r for r in records if not r["reset"]):
            t = int(rec["obs"][0])
            consecutive = max(0, t - 2)  # frames t' in [3, t] are positive; the counter restarts every episode
            assert rec["info"]["learned_success"] == (consecutive >= k), (k, t)
            assert rec["reward"] == float(consecutive >= k)
    # Every frame positive, so only the per-episode reset can restart the count: an episode that
    # ended in success must not hand its count to the next one.
    for k in (2, 3):
        env = LearnedReward(counting_env(max_len=7, max_steps=6, terminate=False), always_positive_logit,
                            output="binary", hold_steps=k)
        records = [r for r in rollout(env, zero, seed=0) if not r["reset"]]
        assert sum(r["truncated"] for r in records) >= 3
        for rec in records:
            t = int(rec["obs"][0])  # the step's index within its episode, from 1
            assert rec["info"]["learned_success"] == (t >= k), (k, t)
    with pytest.raises(ValueError, match="hold_steps"):
        LearnedReward(counting_env(), model, hold_steps=0)


def test_terminate_on_success_and_success_mirroring() -> None:
    model = lambda b: 10.0 * (b["state"][:, 0] - 1.5)  # noqa: E731  (positive from t = 2)
    env = LearnedReward(counting_env(max_len=7, terminate=False), model, hold_steps=2, terminate_on_success=True)
    obs, info = env.reset(seed=0)
    assert info["is_success"] is False  # mirrored from the env's "success" at reset too
    flags = []
    for _ in range(3):
        obs, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
        flags.append(terminated)
        assert info["is_success"] == info["success"]  # the env's own flag, not the learned one
        if terminated:
            break
    assert flags == [False, False, True] and obs[0] == 3  # positive at t = 2, 3 -> held at t = 3


def test_learned_reward_rejects_wrong_model_kind_for_output() -> None:
    with pytest.raises(ValueError, match="output='prob' needs a classifier"):
        LearnedReward(counting_env(), SpecModel(state_spec(output="progress"), potential_fn), output="prob")
    env = LearnedReward(counting_env(), SpecModel(state_spec(output="progress"), potential_fn), output="raw")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(1, np.float32))
    assert isinstance(reward, float)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_spec_mismatch_errors_name_expected_and_actual() -> None:
    env = envs.make("PointReach-v0", obs="state+rgb", seed=0)
    with pytest.raises(ValueError, match=r"missing observation key 'depth'"):
        LearnedReward(env, SpecModel(ModelSpec(inputs={"depth": InputSpec((64, 64, 1), "float32")}), logit_fn))
    with pytest.raises(ValueError, match=r"expects shape \(7,\), env gives \(6,\)"):
        LearnedReward(env, SpecModel(ModelSpec(inputs={"state": InputSpec((7,), "float32")}), logit_fn))
    with pytest.raises(ValueError, match=r"expects dtype float32, env gives uint8"):
        PBRS(env, SpecModel(ModelSpec(inputs={"rgb": InputSpec((64, 64, 3), "float32")}), logit_fn), gamma=0.9)
    with pytest.raises(ValueError, match=r"expects shape \(32, 32, 3\), env gives \(64, 64, 3\)"):
        ProgressReward(env, SpecModel(ModelSpec(inputs={"rgb": InputSpec((32, 32, 3), "uint8")}, output="progress"), logit_fn))


class LayoutChangingEnv(CountingEnv):
    """A counting env whose observations leave the declared space from step ``at`` on."""

    def __init__(self, change: str, at: int = 3) -> None:
        super().__init__(max_len=7, terminate=False)
        self.change, self.at = change, at

    def _obs(self) -> Any:
        state = super()._obs()
        if self.t < self.at:
            return state
        return state.astype(np.float64) if self.change == "dtype" else np.append(state, 0.0).astype(np.float32)


@pytest.mark.parametrize(
    "change, message",
    [("dtype", r"input 'state': expected dtype float32, got float64"), ("shape", r"expected per-frame shape \(3,\), got array of shape \(1, 4\)")],
)
def test_observation_layout_changing_mid_episode_raises(change: str, message: str) -> None:
    # The spec check runs in full once per observation layout: a layout seen (and accepted)
    # before costs almost nothing, a new one is checked again and must still raise.
    env = LearnedReward(TimeLimit(LayoutChangingEnv(change), 7), SpecModel(state_spec(), logit_fn))
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=message):
        env.step(np.zeros(1, np.float32))


def test_batch_check_accepts_numpy_and_torch_and_names_expected_and_actual() -> None:
    from reward_wrappers.models.base import BatchCheck

    check = BatchCheck(state_spec(window=2))
    check({"state": np.zeros((4, 2, 3), np.float32)})
    check({"state": torch.zeros(4, 2, 3)})
    check({"state": np.zeros((1, 2, 3), np.float32)})  # the batch size is free
    with pytest.raises(ValueError, match=r"expected dtype float32, got float64"):
        check({"state": torch.zeros(4, 2, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"with a window of 2, got array of shape \(4, 3\)"):
        check({"state": np.zeros((4, 3), np.float32)})
    with pytest.raises(ValueError, match=r"'state' missing from batch"):
        check({"rgb": np.zeros((4, 2, 3), np.float32)})


def test_weights_and_thresholds_are_checked_at_construction_and_the_paid_reward_is_finite() -> None:
    logit = lambda batch: np.full(len(batch["state"]), 1e308)  # noqa: E731 - finite, but not once weighted
    for kwargs, message in [(dict(model_weight=math.inf), "model_weight must be a finite number"),
                            (dict(mode="weighted", env_weight=math.nan), "env_weight must be a finite number"),
                            (dict(threshold=2.0), r"threshold must be a probability in \[0, 1\]")]:
        with pytest.raises(ValueError, match=message):
            LearnedReward(counting_env(), logit, **kwargs)
    with pytest.raises(ValueError, match="must be a finite number"):
        ProgressReward(counting_env(), logit, model_weight=math.nan)
    env = LearnedReward(counting_env(), logit, output="raw", model_weight=10.0)
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match="mixed reward"):
        env.step(np.zeros(1, np.float32))
    # Phi(s_0) = -1e308, Phi(s_1) = +1e308: each finite, the shaping term 2e308 is not
    env = PBRS(counting_env(), lambda batch: np.where(batch["state"][:, 0] % 2 == 1, 1e308, -1e308), gamma=1.0)
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match="shaped reward"):
        env.step(np.zeros(1, np.float32))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("make", [
    lambda env, f: LearnedReward(env, f),
    lambda env, f: PBRS(env, f, gamma=0.9),
    lambda env, f: ProgressReward(env, f, output="delta"),
])
def test_non_finite_model_output_raises(bad: float, make: Callable) -> None:
    def model(batch: Mapping[str, np.ndarray]) -> np.ndarray:
        out = np.zeros(len(batch["state"]))
        out[batch["state"][:, 0] >= 2] = bad
        return out

    env = make(counting_env(max_len=7, terminate=False), model)
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))
    with pytest.raises(FloatingPointError, match="non-finite"):
        env.step(np.zeros(1, np.float32))


def test_pbrs_requires_the_agents_gamma() -> None:
    with pytest.raises(TypeError, match="agent's discount"):
        PBRS(counting_env(), potential_fn)
    with pytest.raises(ValueError, match="agent's discount"):
        PBRS(counting_env(), potential_fn, gamma=1.5)


# ----------------------------------------------------------------------------------------------
# PBRS
# ----------------------------------------------------------------------------------------------
def episodes_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split a single-env rollout into episodes with their shaping terms and end states."""
    episodes, current = [], None
    for rec in records:
        if rec["reset"]:
            current = {"s0": rec["obs"], "reset_info": rec["info"], "F": []}
            continue
        current["F"].append(rec["info"]["shaping_reward"])
        if rec["terminated"] or rec["truncated"]:
            current.update(sT=rec["obs"], terminated=rec["terminated"])
            episodes.append(current)
    return episodes


def test_pbrs_telescopes_for_terminated_and_truncated_episodes() -> None:
    records = rollout(PBRS(counting_env(max_len=7, max_steps=5), potential_fn, gamma=GAMMA), actions_for(200), seed=7)
    episodes = episodes_of(records)
    assert {e["terminated"] for e in episodes} == {True, False}  # both kinds are covered
    for ep in episodes:
        assert ep["reset_info"]["potential"] == pytest.approx(phi_of(ep["s0"]), abs=1e-12)  # Phi(s_0) cached at reset
        check_telescoping(ep["F"], phi_of(ep["s0"]), phi_of(ep["sT"]), ep["terminated"], GAMMA)
    for rec in (r for r in records if not r["reset"]):
        assert rec["reward"] == pytest.approx(rec["info"]["env_reward"] + rec["info"]["shaping_reward"], abs=1e-12)


def test_pbrs_zeroes_the_potential_on_termination_only() -> None:
    phi = lambda b: b["state"][:, 0] + 10.0  # noqa: E731  (never 0, so zeroing is visible)
    for terminate, max_steps in ((True, 50), (False, 3)):
        env = PBRS(counting_env(max_len=3, max_steps=max_steps, terminate=terminate), phi, gamma=GAMMA)
        env.reset(seed=0)
        for t in range(1, 10):
            _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
            if terminated or truncated:
                break
        phi_prev, phi_last = (t - 1) + 10.0, t + 10.0
        expected = GAMMA * (0.0 if terminated else phi_last) - phi_prev
        assert terminated == terminate and truncated == (not terminate)
        assert info["shaping_reward"] == pytest.approx(expected, abs=1e-12)


def test_pbrs_model_potential_reads_the_spec() -> None:
    """A classifier's potential is its probability; a progress model's its raw output."""
    for output, to_phi in (("logit", lambda v: float(sigmoid(v))), ("progress", float)):
        env = PBRS(counting_env(), SpecModel(state_spec(output=output), logit_fn), gamma=GAMMA)
        obs, info = env.reset(seed=0)
        obs2, _, _, _, info2 = env.step(np.zeros(1, np.float32))
        raw = lambda o: float(logit_fn({"state": o[None]})[0])  # noqa: E731
        assert info["potential"] == pytest.approx(to_phi(raw(obs)))
        assert info2["shaping_reward"] == pytest.approx(GAMMA * to_phi(raw(obs2)) - to_phi(raw(obs)))


def test_pbrs_confidence_gating() -> None:
    class Confident(SpecModel):
        def predict_confidence(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
            return (batch["state"][:, 0] % 2 == 0).astype(np.float64)  # confident on even steps

    phi = lambda b: b["state"][:, 0] + 1.0  # noqa: E731
    env = PBRS(counting_env(max_len=7, terminate=False, max_steps=6), Confident(state_spec("progress", has_confidence=True), phi), gamma=GAMMA, min_confidence=0.5)
    records = rollout(env, np.zeros((6, 1), np.float32), seed=0)
    potentials = [r["info"]["potential"] for r in records[:7]]
    assert potentials == [1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 7.0]
    for ep in episodes_of(records):
        lhs = sum(GAMMA**t * f for t, f in enumerate(ep["F"]))
        assert lhs == pytest.approx(GAMMA ** len(ep["F"]) * potentials[6] - potentials[0], abs=1e-9)
    with pytest.raises(ValueError, match="predict_confidence"):
        PBRS(counting_env(), phi, gamma=GAMMA, min_confidence=0.5)


def test_pbrs_composes_with_learned_reward_in_either_order() -> None:
    acts = actions_for(40)
    inner_learned = rollout(PBRS(LearnedReward(counting_env(), logit_fn), potential_fn, gamma=GAMMA), acts, seed=5)
    outer_learned = rollout(LearnedReward(PBRS(counting_env(), potential_fn, gamma=GAMMA), logit_fn, mode="add"), acts, seed=5)
    for a, b in zip(inner_learned, outer_learned):
        if a["reset"]:
            continue
        learned = float(sigmoid(logit_fn({"state": a["obs"][None]})[0]))
        assert a["reward"] == pytest.approx(learned + a["info"]["shaping_reward"], abs=1e-12)
        # outer LearnedReward(add) on PBRS: env + F + learned
        assert b["reward"] == pytest.approx(b["info"]["env_reward"] + b["info"]["shaping_reward"] + learned, abs=1e-12)
        assert a["info"]["shaping_reward"] == pytest.approx(b["info"]["shaping_reward"], abs=1e-12)


# ----------------------------------------------------------------------------------------------
# ProgressReward
# ----------------------------------------------------------------------------------------------
def test_progress_reward_feeds_a_causal_window_restarted_each_episode() -> None:
    W = 3
    model = SpecModel(state_spec("progress", window=W), window_fn)
    for output in ("progress", "delta"):
        records = rollout(ProgressReward(counting_env(max_len=6, max_steps=5), model, output=output), actions_for(40), seed=9)
        frames: list[np.ndarray] = []
        previous = None
        for rec in records:
            frames = [rec["obs"]] if rec["reset"] else frames + [rec["obs"]]
            window = np.stack([frames[i] for i in window_indices(len(frames) - 1, W)])[None]
            progress = float(window_fn({"state": window})[0])
            if not rec["reset"]:
                expected = progress - previous if output == "delta" else progress
                assert rec["reward"] == pytest.approx(expected, abs=1e-9)
                assert rec["info"]["progress"] == pytest.approx(progress, abs=1e-9)
            previous = progress
    with pytest.raises(ValueError, match="output must be one of"):
        ProgressReward(counting_env(), model, output="prob")


# ----------------------------------------------------------------------------------------------
# built-in envs: check_env, policy sees fewer keys, SB3 training
# ----------------------------------------------------------------------------------------------
def point_model(obs: str, kind: str = "mlp", output: str = "logit", window: int = 1) -> TorchRewardModel:
    env = envs.make("PointReach-v0", obs=obs)
    keys = ("rgb",) if obs == "rgb" or kind == "cnn" else ("state",)
    spec = ModelSpec.from_space(env.observation_space, keys, output=output, window=window)
    torch.manual_seed(0)
    return TorchRewardModel.build(spec, encoder="cnn", hidden=32)


@pytest.mark.parametrize("obs", ["state", "rgb", "state+rgb"])
def test_check_env_on_wrapped_builtin_env(obs: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    clf = point_model(obs, kind="cnn" if obs != "state" else "mlp")
    progress = point_model(obs, kind="mlp" if obs != "rgb" else "cnn", output="progress", window=2)
    wrapped = [
        LearnedReward(envs.make("PointReach-v0", obs=obs, seed=0), clf, hold_steps=2),
        PBRS(envs.make("PointReach-v0", obs=obs, seed=0), clf, gamma=0.99),
        ProgressReward(envs.make("PointReach-v0", obs=obs, seed=0), progress, output="delta"),
        PBRS(LearnedReward(envs.make("PointReach-v0", obs=obs, seed=0), clf, output="binary"), progress, gamma=0.99),
    ]
    for env in wrapped:
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False, skip_render_check=True)


def test_full_gymnasium_check_env_rebuilds_a_stack_of_reward_wrappers() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env

    env = gym.make("CartPole-v1")
    env = LearnedReward(env, lambda b: b["state"][:, 0], output="binary", hold_steps=2)
    env = ProgressReward(PBRS(env, lambda b: b["state"][:, 1], gamma=0.99), lambda b: b["state"][:, 2], mode="add")
    gym_check_env(env, skip_render_check=True)  # includes rebuilding the whole stack from env.spec
    assert [w.name for w in env.spec.additional_wrappers[-3:]] == ["LearnedReward", "PBRS", "ProgressReward"]


def test_policy_sees_fewer_keys_than_the_reward_model() -> None:
    """The package-docstring recipe: reward from rgb, policy on state."""
    env = envs.make("PointReach-v0", obs="state+rgb", seed=0)
    rgb_model = point_model("state+rgb", kind="cnn")
    env = FlattenObservation(FilterObservation(LearnedReward(env, rgb_model), ["state"]))
    assert env.observation_space == envs.make("PointReach-v0", obs="state").observation_space
    obs, _ = env.reset(seed=0)
    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert obs.shape == (6,) and 0.0 < reward < 1.0 and "env_reward" in info

    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(env, warn=False, skip_render_check=True)


def test_pbrs_min_confidence_refuses_a_network_without_confidence_head_at_construction() -> None:
    from reward_wrappers import TorchRewardModel

    env = envs.make("PointReach-v0", obs="state", seed=0)
    plain = TorchRewardModel.build(ModelSpec.from_space(env.observation_space, ("state",), output="progress"), hidden=8)
    with pytest.raises(ValueError, match="min_confidence needs"):
        PBRS(env, plain, gamma=0.9, min_confidence=0.5)


def test_pbrs_scale_multiplies_the_potential_and_still_telescopes() -> None:
    plain = PBRS(counting_env(max_len=3, max_steps=9), potential_fn, gamma=GAMMA)
    scaled = PBRS(counting_env(max_len=3, max_steps=9), potential_fn, gamma=GAMMA, scale=20.0)
    _, info_p = plain.reset(seed=0)
    _, info_s = scaled.reset(seed=0)
    assert info_s["potential"] == pytest.approx(20.0 * info_p["potential"])
    shaping, terminated = [], False
    for action in actions_for(3):
        _, _, terminated, truncated, step_p = plain.step(action)
        _, _, _, _, step_s = scaled.step(action)
        assert step_s["shaping_reward"] == pytest.approx(20.0 * step_p["shaping_reward"])
        shaping.append(step_s["shaping_reward"])
        if terminated or truncated:
            break
    assert terminated  # the counting env ends on success at max_len
    check_telescoping(shaping, 20.0 * info_p["potential"], 0.0, True, GAMMA)
    with pytest.raises(ValueError, match="scale"):
        PBRS(counting_env(), potential_fn, gamma=GAMMA, scale=0.0)


def test_pbrs_offset_shifts_the_potential_before_the_scale_and_zero_still_means_terminated() -> None:
    """``Phi = K * (phi + C)``; the terminating step pays ``0 - Phi(s)``, so with ``C = -phi(goal)``
    finishing no longer gives the potential back."""
    K, C = 2.0, -1.0
    env = PBRS(counting_env(max_len=3, max_steps=9), potential_fn, gamma=GAMMA, scale=K, offset=C)
    obs, info = env.reset(seed=0)
    phi_s = K * (phi_of(obs) + C)
    assert info["potential"] == pytest.approx(phi_s)
    shaping, terminated = [], False
    for action in actions_for(3):
        obs, _, terminated, truncated, step = env.step(action)
        phi_next = 0.0 if terminated else K * (phi_of(obs) + C)
        assert step["shaping_reward"] == pytest.approx(GAMMA * phi_next - phi_s)
        shaping.append(step["shaping_reward"])
        phi_s = phi_next
        if terminated or truncated:
            break
    assert terminated
    with pytest.raises(ValueError, match="offset"):
        PBRS(counting_env(), potential_fn, gamma=GAMMA, offset=float("nan"))
