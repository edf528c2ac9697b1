"""What a reward model read for each transition, and the stack's reward recomputed from it.

Off-policy learners store rewards when transitions are collected; once a reward model is refit,
those rewards are stale (reward-semantics notes). Recomputing them needs what the model reads,
which may be images the policy never sees. :class:`VecTransitionFrames` sits *under* the reward
wrappers of an SB3 stack and keeps, for the latest vector step, each env's model-input frames at
``s`` and ``s'`` (the terminal observation for done envs), the env's own reward and the
termination flags; optionally it also keeps the last ``recent`` frames ``s'`` with their episode
and step ids and the env's success flag, for a labeller to draw from (:meth:`VecTransitionFrames.true_success`
is the only reader of that flag; ``agents.labelling`` counts each read as a label). :func:`transition_rewards` recomputes what a stack of reward wrappers
(:func:`reward_cores`) pays for a batch of stored transitions, with the same formulas the
wrappers use: a learned reward at ``s'``, progress (or its delta), PBRS with the agent's gamma and
``Phi(s') := 0`` on termination only.

>>> import numpy as np
>>> from reward_wrappers.cores.rewards import PBRSCore
>>> core = PBRSCore(lambda b: b["state"][:, 0], num_envs=1, gamma=0.5)
>>> prev, nxt = {"state": np.array([[1.0], [1.0]])}, {"state": np.array([[4.0], [4.0]])}
>>> transition_rewards([core], prev, nxt, np.zeros(2), np.array([False, True])).tolist()
[1.0, -1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from envs.spaces import key_spaces, obs_to_dict
from reward_wrappers.cores.rewards import (
    LearnedRewardCore,
    PBRSCore,
    ProgressCore,
    RewardCore,
    combine_rewards,
    learned_output,
    pbrs_shaping,
    success_score,
)
from reward_wrappers.models.base import model_window
from reward_wrappers.cores.ops import NumpyOps

__all__ = ["VecTransitionFrames", "transition_rewards", "reward_cores", "check_relabelable",
           "predict_in_chunks"]

Frames = dict[str, np.ndarray]


@dataclass
class Transition:
    """One vector step as the reward models saw it (all arrays have the env count first)."""

    prev: Frames
    next: Frames
    env_reward: np.ndarray
    terminated: np.ndarray


class VecTransitionFrames(VecEnvWrapper):
    """Keeps the reward models' inputs of the latest step, and optionally of the last ``recent`` frames.

    Stack it directly on the env (under every reward wrapper), so ``env_reward`` is the env's own
    reward and the frames are raw observations. ``keys`` are the observation keys the reward
    models read; ``keep_prev`` keeps ``s`` as well as ``s'`` (needed where the reward depends on
    both: PBRS, progress deltas). Memory: ``recent`` frames of ``keys`` (fewer if that would pass
``max_recent_bytes``) plus two steps' worth.

    ``last`` is the :class:`Transition` of the latest step; ``recent_frames()`` returns the ring's
    frames ``s'`` oldest first, ``recent_ids()`` their episode ids (unique within the run) and frame
    indices (the reset frame is 0). The env's success flag of each ring frame (``success_key`` of
    the step's info, else SB3's ``is_success``) is kept privately for :meth:`true_success`.
    ``display_keys`` are kept in the ring beside ``keys`` for a person to look at (a labelling
    page), never handed to a model. ``final_only`` keeps only frames that end an episode in the
    ring (a reward paid at episode end reads nothing else).
    """

    def __init__(self, venv: VecEnv, keys: Sequence[str], *, keep_prev: bool = False, recent: int = 0,
                 max_recent_bytes: Optional[int] = None, success_key: str = "success",
                 display_keys: Sequence[str] = (), final_only: bool = False) -> None:
        super().__init__(venv)
        self.final_only = bool(final_only)
        subspaces = key_spaces(venv.observation_space)
        missing = [k for k in (*keys, *display_keys) if k not in subspaces]
        if missing:
            raise ValueError(f"reward models read keys {missing}; the env observations have {sorted(subspaces)}")
        self.keys = tuple(keys)
        self.keep_prev = bool(keep_prev)
        self.success_key = success_key
        self.spaces = {k: subspaces[k] for k in self.keys}
        self.display_keys = tuple(k for k in display_keys if k not in self.keys)
        ring_spaces = {**self.spaces, **{k: subspaces[k] for k in self.display_keys}}
        ring_bytes = sum(np.prod(s.shape) * np.dtype(s.dtype).itemsize for s in ring_spaces.values())
        self.capacity = int(recent)
        if max_recent_bytes is not None:
            self.capacity = min(self.capacity, int(max_recent_bytes) // max(int(ring_bytes), 1))
        self._ring = {k: np.zeros((self.capacity, *s.shape), s.dtype) for k, s in ring_spaces.items()}
        self._ring_success = np.zeros(self.capacity, bool)
        self._ring_episode = np.zeros(self.capacity, np.int64)
        self._ring_step = np.zeros(self.capacity, np.int64)
        self._episode = np.arange(self.num_envs, dtype=np.int64)  # each env's current episode id
        self._step = np.zeros(self.num_envs, np.int64)  # frame index of each env's current observation
        self._episodes_started = self.num_envs
        self._ring_pos = 0
        self._ring_size = 0
        self.frames_seen = 0
        #: whether any step's info carried ``success_key`` (or SB3's ``is_success``)
        self.reports_success = False
        self._current: Optional[Frames] = None
        self.last: Optional[Transition] = None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one env's model inputs at one state."""
        return int(sum(np.prod(s.shape) * np.dtype(s.dtype).itemsize for s in self.spaces.values()))

    def _frames(self, obs: Any) -> Frames:
        as_dict = obs_to_dict(obs, self.observation_space)
        return {k: np.array(as_dict[k], copy=True) for k in (*self.keys, *self.display_keys)}

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._current = self._frames(obs)
        if self.frames_seen:  # every env starts a new episode (the first ids were given at construction)
            self._episode = self._episodes_started + np.arange(self.num_envs, dtype=np.int64)
            self._episodes_started += self.num_envs
        self._step[:] = 0
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        dones = np.asarray(dones, bool)
        returned = self._frames(obs)
        nxt = {k: v.copy() for k, v in returned.items()} if dones.any() else returned
        truncated = np.zeros(len(dones), bool)
        for i in np.flatnonzero(dones):
            terminal = obs_to_dict(infos[i]["terminal_observation"], self.observation_space)
            for k in nxt:
                nxt[k][i] = terminal[k]
            truncated[i] = bool(infos[i].get("TimeLimit.truncated", False))
        prev = {k: self._current[k] for k in self.keys} if self.keep_prev else {}
        self.last = Transition(prev, {k: nxt[k] for k in self.keys}, np.asarray(rewards, np.float64).copy(),
                               dones & ~truncated)
        self._current = returned
        self._step += 1
        if self.capacity:
            flags = [info.get(self.success_key, info.get("is_success")) for info in infos]
            self.reports_success |= any(flag is not None for flag in flags)
            kept = np.flatnonzero(dones) if self.final_only else np.arange(len(dones))
            if len(kept):
                rows = (self._ring_pos + np.arange(len(kept))) % self.capacity
                for k in self._ring:
                    self._ring[k][rows] = nxt[k][kept]
                self._ring_success[rows] = [bool(flags[i]) for i in kept]
                self._ring_episode[rows] = self._episode[kept]
                self._ring_step[rows] = self._step[kept]
                self._ring_pos = int(rows[-1] + 1) % self.capacity
                self._ring_size = min(self._ring_size + len(kept), self.capacity)
        self.frames_seen += len(dones)
        for i in np.flatnonzero(dones):  # the returned obs is the next episode's reset frame
            self._episode[i], self._step[i] = self._episodes_started, 0
            self._episodes_started += 1
        return obs, rewards, dones, infos

    def recent_frames(self, display: bool = False) -> Frames:
        """The ring's frames ``s'``, oldest first; the models' keys, and with ``display`` the
        display keys too."""
        order = self._ring_order()
        keys = (*self.keys, *self.display_keys) if display else self.keys
        return {k: self._ring[k][order] for k in keys}

    def recent_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Episode ids and frame indices of the ring's frames, in ``recent_frames()`` order."""
        order = self._ring_order()
        return self._ring_episode[order], self._ring_step[order]

    def _ring_order(self) -> np.ndarray:
        if self._ring_size < self.capacity:
            return np.arange(self._ring_size)
        return (np.arange(self.capacity) + self._ring_pos) % self.capacity

    def true_success(self, indices: np.ndarray) -> np.ndarray:
        """The env's success flag of ring frames ``indices`` (``recent_frames()`` order). Each
        frame read is a label: only a label source that counts it (``agents.labelling``) calls this."""
        if not self.reports_success:
            raise ValueError(f"the env's infos carry no {self.success_key!r} (nor 'is_success') flag: there is nothing "
                             "to stand in for a labeller; label with --labeller web or --labeller module:callable")
        return self._ring_success[self._ring_order()[np.asarray(indices, dtype=np.int64)]]


def reward_cores(venv: VecEnv) -> list[RewardCore]:
    """The reward cores of an SB3 wrapper stack, innermost first (the order rewards flow through)."""
    from reward_wrappers.sb3 import VecCoreWrapper

    cores = []
    while isinstance(venv, VecEnvWrapper):
        if isinstance(venv, VecCoreWrapper):
            cores.append(venv.core)
        venv = venv.venv
    return cores[::-1]


def check_relabelable(cores: Sequence[RewardCore]) -> None:
    """Raise ``ValueError`` for a stack whose reward is not a function of one stored transition."""
    for core in cores:
        if model_window(core.model) > 1:
            raise ValueError(f"recomputing stored rewards needs window-1 models; {core.model!r} reads "
                             f"{model_window(core.model)} frames")
        if isinstance(core, LearnedRewardCore) and core.hold.hold_steps > 1:
            raise ValueError("recomputing stored rewards needs hold_steps=1 (a hold count depends on the episode's history)")


def needs_prev(cores: Sequence[RewardCore]) -> bool:
    """Whether any core's reward depends on ``s`` as well as ``s'``."""
    return any(isinstance(c, PBRSCore) or (isinstance(c, ProgressCore) and c.output == "delta") for c in cores)


def predict_in_chunks(predict: Callable[[Frames], Any], frames: Frames, chunk: int = 512) -> np.ndarray:
    """``predict`` over a large batch of frames, ``chunk`` rows at a time (bounded memory), as float64.

    >>> predict_in_chunks(lambda b: b["state"][:, 0] * 2, {"state": np.arange(5.0)[:, None]}, chunk=2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    n = len(next(iter(frames.values())))
    out = np.empty(n, np.float64)
    for start in range(0, n, chunk):
        out[start : start + chunk] = np.asarray(predict({k: v[start : start + chunk] for k, v in frames.items()})).reshape(-1)
    return out


def _values(core: RewardCore, frames: Frames, chunk: int) -> np.ndarray:
    return predict_in_chunks(core.feed.values, frames, chunk)


def transition_rewards(cores: Sequence[RewardCore], prev: Frames, nxt: Frames, env_reward: np.ndarray,
                       terminated: np.ndarray, last: Optional[np.ndarray] = None, *, chunk: int = 512) -> np.ndarray:
    """The reward a stack of cores (innermost first) pays for each of a batch of transitions.

    ``prev``/``nxt`` hold the models' inputs at ``s``/``s'`` (``prev`` may be empty when no core
    needs it), ``env_reward`` the env's own reward, ``terminated`` the termination flags (not
    truncation), ``last`` which transitions end their episode (needed by a reward paid at episode
    end: the others pay 0 and are not read). Each core's current model and threshold are used.
    """
    check_relabelable(cores)
    ops = NumpyOps()
    reward = np.asarray(env_reward, np.float64).reshape(-1).copy()
    terminated = np.asarray(terminated, bool).reshape(-1)
    for core in cores:
        if isinstance(core, LearnedRewardCore) and core.at_episode_end:
            if last is None:
                raise ValueError("a reward paid at episode end needs each transition's `last` flag to be recomputed")
            ends = np.asarray(last, bool).reshape(-1)
            raw = _values(core, {k: v[ends] for k, v in nxt.items()}, chunk)
            score = success_score(raw, core.kind, ops)
            learned = np.zeros(len(reward))
            learned[ends] = learned_output(raw, score, score > core.threshold, core.output, ops)
            reward = combine_rewards(reward, learned, core.mode, core.env_weight, core.model_weight)
            continue
        raw_next = _values(core, nxt, chunk)
        if isinstance(core, LearnedRewardCore):
            score = success_score(raw_next, core.kind, ops)
            learned = learned_output(raw_next, score, score > core.threshold, core.output, ops)
            reward = combine_rewards(reward, learned, core.mode, core.env_weight, core.model_weight)
        elif isinstance(core, ProgressCore):
            learned = raw_next - _values(core, prev, chunk) if core.output == "delta" else raw_next
            reward = combine_rewards(reward, learned, core.mode, core.env_weight, core.model_weight)
        elif isinstance(core, PBRSCore):
            phi_prev = core.potential_of(_values(core, prev, chunk))
            phi_next = core.potential_of(raw_next)
            reward = reward + pbrs_shaping(phi_prev, phi_next, terminated, core.gamma, ops)
        else:  # pragma: no cover - a new core kind must say how it pays a transition
            raise TypeError(f"no transition reward for {type(core).__name__}")
    return reward
