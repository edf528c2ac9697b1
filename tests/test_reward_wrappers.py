"""Per-env reward wrappers: LearnedReward, PBRS, ProgressReward (issue 4).

Exactness tests use :class:`CountingEnv`, a deterministic tiny env whose observation encodes the
step count, so every reward can be recomputed by hand; the built-in ``PointReach-v0`` covers
both ``check_env``s and SB3 training. The vector twins are tested in
``test_reward_wrappers_vector.py``, which imports the helpers defined here.
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
from reward_wrappers.base import sigmoid, window_indices

torch.set_num_threads(1)

GAMMA = 0.9


# ----------------------------------------------------------------------------------------------
# helpers shared with test_reward_wrappers_vector.py
# ----------------------------------------------------------------------------------------------
def counting_env(max_steps: int = 5, **kwargs: Any) -> gym.Env:
    return TimeLimit(CountingEnv(**kwargs), max_episode_steps=max_steps)


def state_of(obs: Any) -> Any:
    return obs["state"] if isinstance(obs, Mapping) else obs


def _xp(a: Any) -> Any:
    return torch if isinstance(a, torch.Tensor) else np


def potential_fn(batch: Mapping[str, Any]) -> Any:
    """A nonlinear potential of the counting state, numpy or torch (row-wise)."""
    s = batch["state"]
    xp = _xp(s)
    return xp.sin(s[:, 1] * 1.0) + 0.1 * s[:, 0] - 0.05 * s[:, 2]


def logit_fn(batch: Mapping[str, Any]) -> Any:
    s = batch["state"]
    return 2.0 * (s[:, 0] - 2.5) + 0.5 * s[:, 1]


def always_positive_logit(batch: Mapping[str, Any]) -> Any:
    s = batch["state"]
    return _xp(s).ones_like(s[:, 0]) * 10.0


def phi_of(obs: Any) -> float:
    """``potential_fn`` of one observation, computed independently of any wrapper."""
    s = np.asarray(state_of(obs), dtype=np.float32)[None]
    return float(potential_fn({"state": s})[0])


def check_telescoping(shaping: list[float], phi_s0: float, phi_sT: float, terminated: bool, gamma: float, tol: float = 1e-6) -> float:
    """Assert ``sum_t gamma^t F_t == gamma^T Phi(s_T) - Phi(s_0)`` (``Phi(s_T) = 0`` if terminated)."""
    T = len(shaping)
    lhs = sum(gamma**t * f for t, f in enumerate(shaping))
    rhs = gamma**T * (0.0 if terminated else phi_sT) - phi_s0
    assert abs(lhs - rhs) <= tol, (lhs, rhs, shaping, terminated)
    return abs(lhs - rhs)


class SpecModel:
    """A reward model with a spec around a function (numpy and torch batches)."""

    def __init__(self, spec: ModelSpec, fn: Callable[[Mapping[str, Any]], Any]) -> None:
        self.spec, self.fn, self.calls, self.batch_sizes = spec, fn, 0, []

    def _count(self, batch: Mapping[str, Any]) -> None:
        self.calls += 1
        self.batch_sizes.append(len(next(iter(batch.values()))))

    def predict(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        self._count(batch)
        return np.asarray(self.fn(batch), dtype=np.float64)

    def predict_torch(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._count(batch)
        assert all(isinstance(v, torch.Tensor) for v in batch.values()), "torch path got a non-tensor"
        return self.fn(batch)


def state_spec(output: str = "logit", window: int = 1, **kwargs: Any) -> ModelSpec:
    return ModelSpec(inputs={"state": InputSpec((3,), "float32")}, window=window, output=output, **kwargs)


def window_fn(batch: Mapping[str, Any]) -> Any:
    """A causal window model: weighted sum of t and x over the window (oldest first)."""
    s = batch["state"]  # (B, W, 3)
    W = s.shape[1]
    xp = _xp(s)
    weights = (xp.arange(W) + 1.0) if xp is np else torch.arange(W, dtype=s.dtype) + 1.0
    return (s[:, :, 0] * weights).sum(1) * 0.01 + (s[:, :, 1] * weights).sum(1) * 0.1


def rollout(env: gym.Env, actions: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Step ``env`` with ``actions`` (resetting on done); one record per step, reset records too."""
    records = []
    obs, info = env.reset(seed=seed)
    records.append({"reset": True, "obs": obs, "info": info})
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        records.append({"reset": False, "obs": obs, "reward": reward, "terminated": terminated, "truncated": truncated, "info": info})
        if terminated or truncated:
            obs, info = env.reset()
            records.append({"reset": True, "obs": obs, "info": info})
    return records


def actions_for(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1)).astype(np.float32)


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
    from reward_wrappers.base import BatchCheck

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


# ----------------------------------------------------------------------------------------------
# numpy copies of state networks (the per-step inference path)
# ----------------------------------------------------------------------------------------------
def _two_key_spec(window: int, output: str) -> ModelSpec:
    return ModelSpec(
        inputs={"state": InputSpec((5,), "float32"), "proprio": InputSpec((3,), "float32")}, window=window, output=output
    )


def _state_batch(spec: ModelSpec, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lead = (n,) if spec.window == 1 else (n, spec.window)
    return {k: (rng.normal(size=(*lead, *v.shape)) * 3.0 + 1.0).astype(np.float32) for k, v in spec.inputs.items()}


def _torch_columns(model: TorchRewardModel, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model.net({k: torch.as_tensor(v) for k, v in batch.items()}).float().numpy()


def _normalise(model: TorchRewardModel, batch: Mapping[str, np.ndarray]) -> None:
    """Non-trivial stored normalisation (a near-constant feature gets the clamped std)."""
    net = model.net.trunk if hasattr(model.net, "trunk") else model.net
    for key, x in batch.items():
        flat = x.reshape(-1, x.shape[-1])
        std = flat.std(axis=0)
        std[0] = 0.0
        net.set_state_normalization(key, flat.mean(axis=0), std)


NUMPY_NETS = {
    "classifier": lambda w: TorchRewardModel.build(_two_key_spec(w, "logit"), hidden=32, feature_dim=16),
    "classifier_default_widths": lambda w: TorchRewardModel.build(_two_key_spec(w, "logit")),
    "progress": lambda w: TorchRewardModel.build(_two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8),
    "progress_ensemble": lambda w: TorchRewardModel.build(
        _two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8, ensemble=4
    ),
    "stages_ensemble": lambda w: TorchRewardModel.build(
        _two_key_spec(w, "progress"), "progress_net", hidden=32, head_hidden=8, ensemble=3, stage_priors=[0.2, 0.5, 0.3]
    ),
}


@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("name", list(NUMPY_NETS))
def test_numpy_copy_matches_torch_on_every_output_column(name: str, window: int) -> None:
    torch.manual_seed(0)
    model = NUMPY_NETS[name](window)
    batch = _state_batch(model.spec, min(8, model.numpy_max_rows // window))
    _normalise(model, batch)
    forward = model.numpy_forward(batch)
    assert forward is not None
    expected = _torch_columns(model, batch)
    got = forward(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict(batch), expected[:, 0], rtol=1e-5, atol=1e-5)
    if model.spec.output == "progress" and name != "progress":
        model.spec = ModelSpec(**{**model.spec.__dict__, "has_confidence": True})
        value, confidence = model.predict_with_confidence(batch)
        np.testing.assert_allclose(value, expected[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(confidence, expected[:, 1], rtol=1e-5, atol=1e-5)


def test_numpy_copy_follows_training_and_every_weight_change() -> None:
    """The numpy copy never answers from stale weights, however the network changes."""
    torch.manual_seed(0)
    model = TorchRewardModel.build(_two_key_spec(2, "logit"), hidden=16, feature_dim=8)
    batch = _state_batch(model.spec, 6)

    def agrees() -> None:
        assert model.numpy_forward(batch) is not None
        np.testing.assert_allclose(model.predict(batch), _torch_columns(model, batch)[:, 0], rtol=1e-5, atol=1e-5)

    agrees()
    before = model.predict(batch)
    # what the trainers do: train mode, optimiser steps in place, then predict in eval mode
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=0.05)
    model.net.train()
    for _ in range(3):
        loss = model.net({k: torch.as_tensor(v) for k, v in batch.items()}).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.net.eval()
    assert not np.allclose(model.predict(batch), before)
    agrees()
    _normalise(model, batch)  # new normalisation buffers (copy_ in place)
    agrees()
    other = TorchRewardModel.build(model.spec, hidden=16, feature_dim=8)
    model.net.load_state_dict(other.net.state_dict())  # early stopping's "restore the best"
    agrees()
    model.net.load_state_dict(TorchRewardModel.build(model.spec, hidden=16, feature_dim=8).net.state_dict(), assign=True)
    agrees()
    head = model.net.head[0]
    head.weight.data = torch.randn_like(head.weight)  # re-allocated storage, same Parameter
    agrees()
    model.net.head[2] = torch.nn.Linear(16, 1)  # a replaced module
    agrees()
    with torch.no_grad():
        model.net.encoders["state"].net[0].bias.add_(1.0)
    agrees()
    model.net.double()  # not float32 any more: torch answers, in float64
    assert model.numpy_forward(batch) is None
    np.testing.assert_allclose(model.predict(batch), _torch_columns(model, batch)[:, 0], rtol=1e-6)


def test_numpy_copy_only_for_small_state_batches() -> None:
    torch.manual_seed(0)
    image_spec = ModelSpec(inputs={"rgb": InputSpec((16, 16, 3), "uint8"), "state": InputSpec((3,), "float32")})
    image_model = TorchRewardModel.build(image_spec, encoder="cnn", hidden=16)
    assert image_model.numpy_forward() is None  # an image encoder: torch only
    model = TorchRewardModel.build(_two_key_spec(2, "logit"))  # default widths
    widest = 2 * 2 * 128 * 256  # the head's first layer: 2 keys x 2 frames x 128 features -> 256
    assert model.numpy_max_rows == TorchRewardModel.numpy_max_layer_macs // widest == 6
    assert model.numpy_forward(_state_batch(model.spec, 3)) is not None  # 3 envs x window 2
    big = _state_batch(model.spec, 4)
    assert model.numpy_forward(big) is None  # larger batches (trainers' evaluation) stay on torch
    np.testing.assert_allclose(model.predict(big), _torch_columns(model, big)[:, 0], rtol=1e-5, atol=1e-5)
    model.numpy_max_layer_macs = 0
    assert model.numpy_forward(_state_batch(model.spec, 1)) is None
    tensors = {k: torch.as_tensor(v) for k, v in _state_batch(model.spec, 4).items()}
    assert model.numpy_forward(tensors) is None


def test_model_pickles_after_predict() -> None:
    """SubprocVecEnv/spec round trips pickle the model; the numpy copy is rebuilt, not pickled."""
    import copy
    import pickle

    model = TorchRewardModel.build(_two_key_spec(1, "logit"), hidden=16)
    batch = _state_batch(model.spec, 4)
    expected = model.predict(batch)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        np.testing.assert_array_equal(clone.predict(batch), expected)
        with torch.no_grad():
            clone.net.head[0].bias.add_(1.0)  # the clone's copy follows the clone's weights only
        assert not np.allclose(clone.predict(batch), expected)
        np.testing.assert_array_equal(model.predict(batch), expected)


class _RunsCodeWhenUnpickled:
    """A pickle that creates ``marker`` when loaded: what an untrusted checkpoint could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_load_reward_model_never_unpickles_and_names_the_bad_file(tmp_path) -> None:
    from reward_wrappers import load_reward_model
    from reward_wrappers.checkpoint import FORMAT, VERSION

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _RunsCodeWhenUnpickled(str(marker))}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt could not be read .* weights_only=True"):
        load_reward_model(evil)
    assert not marker.exists()

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_reward_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt could not be read"):
        load_reward_model(garbage)
    cases = {
        "foreign.pt": ({"weights": torch.zeros(2)}, "not a RewardSwap reward-model checkpoint"),
        "future.pt": ({"format": FORMAT, "version": VERSION + 1}, f"version {VERSION + 1}.*upgrade"),
        "partial.pt": ({"format": FORMAT, "version": VERSION, "spec": {}}, r"lacks checkpoint keys \['arch', 'state_dict'\]"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            load_reward_model(tmp_path / name)
