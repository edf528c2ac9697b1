"""Reward arithmetic shared by every wrapper twin (single env, SB3 VecEnv, gymnasium vector, torch).

Each wrapper in this package is a thin adapter: it turns its env's step results into batched
*frames* (``{key: (B, *shape)}``), a reward array, a termination mask and, where episodes
restarted inside the step, a restart mask plus the frames the new episodes start from. The
classes here do everything else, once, for every twin:

* :class:`ModelFeed` keeps each env's episode frames and builds the causal window its frame
  sampling picks (``spec.window`` frames, first frame repeated as in
  :func:`~reward_wrappers.models.base.window_indices`) and runs **one** batched model call per
  vector step, rows for restarted episodes included;
* :func:`success_score`, :func:`potential_values`, :func:`combine_rewards`,
  :class:`HoldCounter` and :func:`pbrs_shaping` hold the formulas;
* :class:`LearnedRewardCore`, :class:`PBRSCore` and :class:`ProgressCore` hold the per-episode
  state (hold counters, the cached potential, the previous progress) of a batch of envs.

The same code runs on numpy arrays and on torch tensors (:class:`~reward_wrappers.cores.ops.NumpyOps`, :class:`~reward_wrappers.cores.ops.TorchOps`),
so the per-env wrapper and every vectorised twin give the same rewards by construction.

Step protocol (``B`` envs; all masks are boolean ``(B,)``):

* ``begin(frames, mask)``: the masked envs start an episode at ``frames`` (after ``reset``).
* ``step(frames, env_reward, terminated, fresh=, ended=, restart_frames=)``: ``frames`` are the
  observations the step reached (``s'``, the *terminal* observation for envs that finished).
  ``fresh`` envs did not really step: their ``frames`` are the first frame of a new episode
  (gymnasium's NEXT_STEP reset step); they get reward 0 and begin there. ``ended`` envs finished
  at ``frames`` and begin a new episode at ``restart_frames`` (SB3 VecEnv, SAME_STEP). ``last`` envs'
  transitions end their episodes (a reward paid at episode end reads only those rows).

>>> import numpy as np
>>> core = PBRSCore(lambda b: b["state"][:, 0], num_envs=2, gamma=0.5)
>>> _ = core.begin({"state": np.array([[1.0], [2.0]])})
>>> out = core.step({"state": np.array([[4.0], [4.0]])}, np.zeros(2), np.array([False, True]))
>>> out.reward.tolist()  # 0.5 * 4 - 1, then 0.5 * 0 - 2 (terminated: Phi(s') = 0)
[1.0, -2.0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
from gymnasium import spaces

from envs.spaces import key_spaces, obs_keys
from reward_wrappers.models.base import ModelLike, RewardModel, as_reward_model, check_space_matches
from reward_wrappers.models.checkpoint import load_reward_model
from reward_wrappers.cores.feed import ModelFeed
from reward_wrappers.cores.ops import Array, Frames, Mask, NumpyOps, Ops


#: Info keys every wrapper writes (one place, so twins and tests agree on the names).
ENV_REWARD = "env_reward"
LEARNED_REWARD = "learned_reward"
LEARNED_SUCCESS = "learned_success"
SHAPING_REWARD = "shaping_reward"
POTENTIAL = "potential"
PROGRESS = "progress"

REWARD_MODES = ("replace", "add", "weighted")
LEARNED_OUTPUTS = ("prob", "binary", "logit", "raw")
#: When a learned reward is paid: every step, or once per episode on its last step (``reward_at``).
REWARD_AT = ("step", "episode-end")
PROGRESS_OUTPUTS = ("progress", "delta")




# --------------------------------------------------------------------------------------------
# observations -> frames
# --------------------------------------------------------------------------------------------
def model_keys(model: RewardModel, observation_space: spaces.Space) -> tuple[str, ...]:
    """Observation keys a model reads: its spec's keys (plus any ``extra_keys`` it declares, e.g. a
    process potential's goal key), or every key for a spec-less callable."""
    if model.spec is None:
        return obs_keys(observation_space)
    return tuple(model.spec.inputs) + tuple(k for k in getattr(model, "extra_keys", ()) if k not in model.spec.inputs)


#: Frames key prefix of values a model reads from ``info`` (a process potential's goal, say).
INFO_PREFIX = "info:"


def model_info_keys(model: RewardModel) -> tuple[str, ...]:
    """``info`` keys a model reads beside its observations (its ``info_keys``; usually none)."""
    return tuple(getattr(model, "info_keys", ()))


def info_value(info: Any, key: str, where: str) -> Any:
    """``info[key]``, or a ``KeyError`` saying which info lacked it and what it has."""
    try:
        return info[key]
    except (KeyError, TypeError):
        have = sorted(info) if isinstance(info, dict) else type(info).__name__
        raise KeyError(f"the reward model reads info[{key!r}], which the {where} info lacks (it has {have})") from None


class FrameReader:
    """Reads the model's keys out of observations of one observation space (decided once).

    ``batched(obs)`` views a vector env's batched observation as frames (no copy); ``single(obs)``
    makes one env's observation a batch of one. A plain ``Box`` observation is keyed by
    :func:`envs.spaces.default_key`.
    """

    def __init__(self, single_space: spaces.Space, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.is_dict = isinstance(single_space, spaces.Dict)
        self.plain_key = None if self.is_dict else obs_keys(single_space)[0]

    def batched(self, obs: Any) -> dict[str, Array]:
        if self.is_dict or isinstance(obs, dict):
            return {k: obs[k] for k in self.keys}
        return {self.plain_key: obs}  # type: ignore[dict-item]

    def single(self, obs: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(v)[None] for k, v in self.batched(obs).items()}


def validated_model(model: ModelLike, observation_space: spaces.Space, *, what: str = "env") -> RewardModel:
    """``as_reward_model`` plus a construction-time check of the space against ``model.spec``.
    A checkpoint path is loaded (``load_reward_model``), so config files (rl-zoo3's
    ``env_wrapper``, gymnasium env specs) can stack the wrappers by path."""
    if isinstance(model, (str, os.PathLike)):
        model = load_reward_model(model)
    model = as_reward_model(model)
    check_space_matches(model.spec, observation_space, what=what)
    missing = [k for k in getattr(model, "extra_keys", ()) if k not in key_spaces(observation_space)]
    if missing:
        raise ValueError(f"the model also reads observation keys {missing}, which the {what} lacks "
                         f"(it has {sorted(key_spaces(observation_space))})")
    return model


# --------------------------------------------------------------------------------------------
# formulas
# --------------------------------------------------------------------------------------------
def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def output_kind(model: RewardModel) -> str:
    """What the model's raw output means; a spec-less callable is taken to return a logit."""
    return "logit" if model.spec is None else model.spec.output


def success_score(raw: Array, kind: str, ops: Ops) -> Array:
    """What ``threshold`` is compared with: the probability for a logit model, else the output."""
    return ops.sigmoid(raw) if kind == "logit" else raw


def potential_values(raw: Array, kind: str, ops: Ops) -> Array:
    """A potential from a model's output: a classifier's probability, else the raw output."""
    return ops.sigmoid(raw) if kind == "logit" else raw


def combine_rewards(env_reward: Array, learned: Array, mode: str, env_weight: float, model_weight: float) -> Array:
    """``replace``: ``model_weight * learned``; ``add``: ``env + model_weight * learned``;
    ``weighted``: ``env_weight * env + model_weight * learned``."""
    if mode == "replace":
        return model_weight * learned
    if mode == "add":
        return env_reward + model_weight * learned
    return env_weight * env_reward + model_weight * learned


def pbrs_shaping(phi_s: Array, phi_next: Array, terminated: Mask, gamma: float, ops: Ops) -> Array:
    """``F = gamma * Phi(s') - Phi(s)`` with ``Phi(s') := 0`` on termination only.

    Truncation (a time limit) keeps ``Phi(s')``: the agent bootstraps from ``s'`` there, and
    zeroing it would make the shaped return depend on where the clock stopped.
    """
    return gamma * ops.where(terminated, 0.0, phi_next) - phi_s


def learned_output(raw: Array, score: Array, success: Mask, output: str, ops: Ops) -> Array:
    """A learned reward per ``output``: ``binary`` the success decision, ``prob`` the score (a
    classifier's probability), ``logit``/``raw`` the model's raw output."""
    if output == "binary":
        return ops.to_float(success)
    return score if output == "prob" else raw


def validate_mode(mode: str, env_weight: float, model_weight: float) -> None:
    check_choice("mode", mode, REWARD_MODES)
    for name, value in (("env_weight", env_weight), ("model_weight", model_weight)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if mode != "weighted" and env_weight != 0.0:
        raise ValueError(f"env_weight is only used with mode='weighted' (got mode={mode!r}, env_weight={env_weight})")


def validate_gamma(gamma: Optional[float]) -> float:
    if gamma is None:
        raise TypeError(
            "PBRS needs gamma=<the agent's discount factor> (e.g. PPO(gamma=0.99) -> gamma=0.99): "
            "shaping is policy-invariant only when it uses the agent's own gamma"
        )
    gamma = float(gamma)
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be the agent's discount factor, in (0, 1]; got {gamma}")
    return gamma


class HoldCounter:
    """Per-env count of consecutive positive frames; success once the count reaches ``k``."""

    def __init__(self, num_envs: int, hold_steps: int, ops: Ops) -> None:
        if int(hold_steps) < 1:
            raise ValueError(f"hold_steps must be >= 1, got {hold_steps}")
        self.hold_steps = int(hold_steps)
        self.ops = ops
        self.counts = ops.zeros(num_envs)

    def reset(self, mask: Optional[Mask] = None) -> None:
        if self.hold_steps == 1:
            return
        self.counts = self.ops.zeros(len(self.counts)) if mask is None else self.ops.where(mask, 0.0, self.counts)

    def update(self, positive: Mask) -> Mask:
        if self.hold_steps == 1:  # success is the frame's own decision; counts would stay unused
            return positive
        self.counts = self.ops.where(positive, self.counts + 1.0, 0.0)
        return self.counts >= self.hold_steps


# --------------------------------------------------------------------------------------------
# per-batch reward state
# --------------------------------------------------------------------------------------------
@dataclass
class StepOutput:
    """One vector step's rewards, the per-env values to put in infos, and learned terminations."""

    reward: Array
    info: dict[str, Array] = field(default_factory=dict)
    terminate: Optional[Array] = None


class LearnedRewardCore:
    """State and arithmetic of :class:`~reward_wrappers.learned_reward.LearnedReward` for B envs.

    Its keyword arguments are the wrapper's options, for all four twins (:mod:`reward_wrappers.twins`).
    """

    #: wrapper attribute -> core attribute, set on every twin
    wrapper_attributes = {"model": "model"}

    def __init__(
        self,
        model: ModelLike,
        num_envs: int = 1,
        ops: Optional[Ops] = None,
        *,
        mode: str = "replace",
        env_weight: float = 0.0,
        model_weight: float = 1.0,
        output: str = "prob",
        threshold: Optional[float] = None,
        hold_steps: int = 1,
        terminate_on_success: bool = False,
        reward_at: str = "step",
    ) -> None:
        self.ops = ops or NumpyOps()
        self.model = as_reward_model(model)
        check_choice("reward_at", reward_at, REWARD_AT)
        self.at_episode_end = reward_at == "episode-end"
        validate_mode(mode, env_weight, model_weight)
        check_choice("output", output, LEARNED_OUTPUTS)
        self.kind = output_kind(self.model)
        if output in ("prob", "logit") and self.kind != "logit":
            raise ValueError(
                f"output={output!r} needs a classifier (spec.output='logit'); this model's output is "
                f"{self.kind!r}: use output='raw' (or 'binary' to threshold the raw value)"
            )
        self.mode, self.env_weight, self.model_weight = mode, float(env_weight), float(model_weight)
        self.output = output
        self._threshold = None if threshold is None else float(threshold)
        if self._threshold is not None and not (
                0.0 <= self._threshold <= 1.0 if self.kind == "logit" else np.isfinite(self._threshold)):
            raise ValueError(f"threshold must be {'a probability in [0, 1]' if self.kind == 'logit' else 'finite'} "
                             f"for this model (output {self.kind!r}), got {threshold}")
        self.terminate_on_success = bool(terminate_on_success)
        self.feed = ModelFeed(self.model, num_envs, self.ops)
        self.hold = HoldCounter(num_envs, hold_steps, self.ops)
        if self.at_episode_end and (self.feed.window > 1 or hold_steps > 1 or terminate_on_success):
            # Only an episode's final frame is rendered: a window or a hold would read frames that are not there.
            raise ValueError("reward_at='episode-end' reads each episode's final frame only: it needs a single-frame "
                             f"model (this one reads {self.feed.window}), hold_steps=1 (got {hold_steps}) and no "
                             "terminate_on_success")

    @property
    def threshold(self) -> float:
        """The caller's threshold, else the model's own (tuned on validation data), read per step so
        a model refit during training (:class:`~reward_wrappers.models.base.SwappableModel`) brings its own."""
        if self._threshold is not None:
            return self._threshold
        return float(self.model.spec.threshold) if self.model.spec is not None else 0.5

    def begin(self, frames: Frames, mask: Optional[Mask] = None) -> dict[str, Array]:
        self.feed.begin(frames, mask, want_values=False)
        self.hold.reset(mask)
        return {}

    def step(
        self,
        frames: Frames,
        env_reward: Array,
        terminated: Mask,
        *,
        fresh: Optional[Mask] = None,
        ended: Optional[Mask] = None,
        restart_frames: Optional[Frames] = None,
        last: Optional[Mask] = None,
    ) -> StepOutput:
        ops = self.ops
        if self.at_episode_end:
            return self._episode_end_step(frames, env_reward, fresh, last)
        has_fresh, has_ended = ops.any(fresh), ops.any(ended)
        raw, _ = self.feed.evaluate(frames, fresh=fresh, ended=ended, restart_frames=restart_frames)
        score = success_score(raw, self.kind, ops)
        positive = score > self.threshold
        if has_fresh:  # a reset step: the hold count restarts and the reset frame does not count
            self.hold.reset(fresh)
            positive = positive & ~fresh
        success = self.hold.update(positive)
        learned = learned_output(raw, score, success, self.output, ops)
        reward = ops.check_finite(combine_rewards(env_reward, learned, self.mode, self.env_weight, self.model_weight),
                                  "the mixed reward (env and learned rewards with their weights)")
        if has_fresh:  # a reset step (NEXT_STEP autoreset) is not a transition: no reward
            reward = ops.where(fresh, 0.0, reward)
            learned = ops.where(fresh, 0.0, learned)
        if has_ended:
            self.hold.reset(ended)
        info = {ENV_REWARD: env_reward, LEARNED_REWARD: learned, LEARNED_SUCCESS: success}
        return StepOutput(reward, info, success if self.terminate_on_success else None)

    def _episode_end_step(self, frames: Frames, env_reward: Array, fresh: Optional[Mask], last: Optional[Mask]) -> StepOutput:
        """``reward_at="episode-end"``: the model reads only the ``last`` rows' frames (each episode's
        final frame) and pays there; every other step's learned term is 0."""
        ops = self.ops
        n = len(env_reward)
        learned, success = ops.zeros(n), ops.falses(n)
        if last is not None and ops.any(last):
            rows = {k: v[last] for k, v in frames.items()}
            raw = self.feed.values(rows)
            score = success_score(raw, self.kind, ops)
            positive = score > self.threshold
            learned[last] = learned_output(raw, score, positive, self.output, ops)
            success[last] = positive
        reward = ops.check_finite(combine_rewards(env_reward, learned, self.mode, self.env_weight, self.model_weight),
                                  "the mixed reward (env and learned rewards with their weights)")
        if ops.any(fresh):  # a reset step (NEXT_STEP autoreset) is not a transition: no reward
            reward = ops.where(fresh, 0.0, reward)
        return StepOutput(reward, {ENV_REWARD: env_reward, LEARNED_REWARD: learned, LEARNED_SUCCESS: success}, None)


class PBRSCore:
    """State and arithmetic of :class:`~reward_wrappers.pbrs.PBRS` for B envs (cached ``Phi(s)``)."""

    wrapper_attributes = {"gamma": "gamma", "potential": "model"}

    def __init__(
        self,
        potential: ModelLike,
        num_envs: int = 1,
        ops: Optional[Ops] = None,
        *,
        gamma: Optional[float] = None,
        min_confidence: Optional[float] = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> None:
        self.ops = ops or NumpyOps()
        self.gamma = validate_gamma(gamma)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"the potential's scale must be a positive number, got {scale}")
        if not np.isfinite(offset):
            raise ValueError(f"the potential's offset must be a finite number, got {offset}")
        self.scale, self.offset = float(scale), float(offset)
        self.model = as_reward_model(potential)
        # A bare callable *is* the potential; a model's output is read per its spec.
        self.kind = "raw" if self.model.spec is None else self.model.spec.output
        episodic = getattr(self.model, "episode_potential", None)
        if episodic is not None:  # keeps per-episode state itself (a process potential): its values are Phi
            if min_confidence is not None:
                raise ValueError("min_confidence does not apply to a potential that gates itself "
                                 "(a process potential: set FusionOverride.risk_tolerance)")
            self.kind = "raw"
            self.feed: Any = episodic(num_envs, self.ops)
        else:
            self.feed = ModelFeed(self.model, num_envs, self.ops, min_confidence=min_confidence, what="potential")
        self.phi = self.ops.zeros(num_envs)

    def potential_of(self, raw: Array) -> Array:
        """``Phi = scale * (potential + offset)`` from the model's raw output."""
        values = potential_values(raw, self.kind, self.ops)
        if self.offset != 0.0:
            values = values + self.offset
        return values if self.scale == 1.0 else values * self.scale

    def begin(self, frames: Frames, mask: Optional[Mask] = None) -> dict[str, Array]:
        phi = self.potential_of(self.feed.begin(frames, mask))
        self.phi = phi if mask is None else self.ops.where(mask, phi, self.phi)
        return {POTENTIAL: self.phi}

    def step(
        self,
        frames: Frames,
        env_reward: Array,
        terminated: Mask,
        *,
        fresh: Optional[Mask] = None,
        ended: Optional[Mask] = None,
        restart_frames: Optional[Frames] = None,
        last: Optional[Mask] = None,
    ) -> StepOutput:
        ops = self.ops
        raw, restart_raw = self.feed.evaluate(
            frames, fresh=fresh, ended=ended, restart_frames=restart_frames, want_restart_values=True
        )
        phi_next = self.potential_of(raw)
        shaping = pbrs_shaping(self.phi, phi_next, terminated, self.gamma, ops)
        if ops.any(fresh):  # reset step: Phi(s_0) is cached, nothing is paid
            shaping = ops.where(fresh, 0.0, shaping)
        reward = ops.check_finite(env_reward + shaping, "the shaped reward (reward + gamma * Phi(s') - Phi(s))")
        self.phi = phi_next
        if restart_raw is not None:
            self.phi = ops.where(ended, self.potential_of(restart_raw), self.phi)
        info = {ENV_REWARD: env_reward, SHAPING_REWARD: shaping, POTENTIAL: phi_next,
                **getattr(self.feed, "diagnostics", {})}
        if restart_raw is not None:
            info["reset_" + POTENTIAL] = self.phi
        return StepOutput(reward, info)


class ProgressCore:
    """State and arithmetic of :class:`~reward_wrappers.progress_reward.ProgressReward` for B envs."""

    wrapper_attributes = {"model": "model"}

    def __init__(
        self,
        model: ModelLike,
        num_envs: int = 1,
        ops: Optional[Ops] = None,
        *,
        output: str = "progress",
        mode: str = "replace",
        env_weight: float = 0.0,
        model_weight: float = 1.0,
    ) -> None:
        self.ops = ops or NumpyOps()
        check_choice("output", output, PROGRESS_OUTPUTS)
        validate_mode(mode, env_weight, model_weight)
        self.model = as_reward_model(model)
        self.output = output
        self.mode, self.env_weight, self.model_weight = mode, float(env_weight), float(model_weight)
        self.feed = ModelFeed(self.model, num_envs, self.ops, what="progress model")
        self.previous = self.ops.zeros(num_envs)

    def begin(self, frames: Frames, mask: Optional[Mask] = None) -> dict[str, Array]:
        values = self.feed.begin(frames, mask, want_values=self.output == "delta")
        if values is not None:
            self.previous = values if mask is None else self.ops.where(mask, values, self.previous)
            return {PROGRESS: self.previous}
        return {}

    def step(
        self,
        frames: Frames,
        env_reward: Array,
        terminated: Mask,
        *,
        fresh: Optional[Mask] = None,
        ended: Optional[Mask] = None,
        restart_frames: Optional[Frames] = None,
        last: Optional[Mask] = None,
    ) -> StepOutput:
        ops = self.ops
        delta = self.output == "delta"
        progress, restart_progress = self.feed.evaluate(
            frames, fresh=fresh, ended=ended, restart_frames=restart_frames, want_restart_values=delta
        )
        learned = progress - self.previous if delta else progress
        reward = ops.check_finite(combine_rewards(env_reward, learned, self.mode, self.env_weight, self.model_weight),
                                  "the mixed reward (env and learned rewards with their weights)")
        if ops.any(fresh):  # a reset step pays nothing
            learned = ops.where(fresh, 0.0, learned)
            reward = ops.where(fresh, 0.0, reward)
        self.previous = progress
        if restart_progress is not None:
            self.previous = ops.where(ended, restart_progress, self.previous)
        return StepOutput(reward, {ENV_REWARD: env_reward, LEARNED_REWARD: learned, PROGRESS: progress})


RewardCore = Union[LearnedRewardCore, PBRSCore, ProgressCore]
CoreFactory = Callable[[int, Ops], RewardCore]
