"""SAC replay buffers that keep rewards current and mix in demonstrations (HIL-SERL / RLPD).

Passed to SB3 through its own extension point (``replay_buffer_class`` + ``replay_buffer_kwargs``),
so SAC itself is unchanged:

* beside every transition the buffer keeps what the reward models read at ``s'`` (and ``s`` where
  the reward needs it), uint8 images included, taken from :class:`VecTransitionFrames` at ``add``
  time, plus the env's own reward; :meth:`RelabelingMixin.relabel` recomputes every stored reward
  with the current models (:func:`reward_wrappers.transitions.transition_rewards`);
* :class:`Demonstrations` are successful recorded trajectories as transitions (policy
  observations ``t`` and ``t + 1``, actions scaled as SAC stores them, terminated from the record);
  their rewards come from the same reward function as online data, never from the recording, and
  are recomputed on relabel too (a run on the env's own reward keeps the recorded rewards, once
  the recording states they are that reward); each sampled batch draws ``demo_ratio`` of its rows from them
  (RLPD's symmetric sampling), the rest from online data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples

from envs.spaces import key_spaces
from reward_wrappers.transitions import Frames, VecTransitionFrames

#: ``(prev_frames, next_frames, env_reward, terminated, last) -> rewards``, as the wrappers pay them
#: now; ``last`` marks transitions that end their episode (a reward paid at episode end reads them only).
RewardFunction = Callable[[Frames, Frames, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Demonstrations:
    """Transitions from successful recorded trajectories, in the replay buffer's layout."""

    obs: dict[str, np.ndarray]
    next_obs: dict[str, np.ndarray]
    actions: np.ndarray
    env_rewards: np.ndarray
    terminated: np.ndarray
    prev_frames: Frames
    next_frames: Frames
    trajectories: int
    last: np.ndarray  # each trajectory's final transition
    rewards: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.actions)


def check_recorded_rewards(trajectories: list[Any], env_id: str, env_kwargs: dict[str, Any], reward: str) -> None:
    """Raise ``ValueError`` unless every trajectory's ``rewards.npy`` is what this run's env pays.

    A run on the env's own reward takes the demonstrations' rewards from the recording, so the
    recording must say (``meta.json``: ``"env"`` and ``"env_reward"``, as ``rewardswap collect``
    writes them) that it came from the same env id, constructor arguments and reward mode.
    """
    for traj in trajectories:
        spec, recorded = traj.meta.get("env"), traj.meta.get("env_reward")
        if not isinstance(spec, dict) or recorded is None:
            raise ValueError(f"--demos with --reward env: {traj.path}/meta.json does not state which reward rewards.npy "
                             "holds (no \"env\" or \"env_reward\" entry; rewardswap collect writes both): record the "
                             "demonstrations again with rewardswap collect, or use a learned reward")
        wanted = {"id": env_id, "kwargs": dict(env_kwargs), "env_reward": reward}
        found = {"id": spec.get("id"), "kwargs": spec.get("kwargs"), "env_reward": recorded}
        if found != wanted:
            diff = ", ".join(f"{k}: recorded {found[k]!r}, this run {wanted[k]!r}" for k in wanted if found[k] != wanted[k])
            raise ValueError(f"--demos with --reward env: {traj.path} holds another reward than this run pays ({diff})")


def load_demonstrations(data: str | os.PathLike | list[Any], observation_space: spaces.Space, action_space: spaces.Box,
                        model_keys: tuple[str, ...], env_reward: Optional[tuple[str, dict[str, Any], str]] = None
                        ) -> Demonstrations:
    """Successful trajectories of a buffer directory as transitions.

    ``observation_space`` is what the policy sees (its keys are read from the recording);
    ``model_keys`` are what the reward models read (they may differ: policy on state, reward on
    rgb). ``env_reward`` (env id, kwargs, reward mode), given when the run pays the env's own
    reward, is checked against each recording (:func:`check_recorded_rewards`). Raises
    ``ValueError`` naming the trajectory, key, shape and dtype that do not fit.
    """
    from collectors import load_trajectories

    trajectories = [t for t in (load_trajectories(data) if isinstance(data, (str, os.PathLike)) else data) if t.success]
    if not trajectories:
        raise ValueError(f"--demos {data}: no successful trajectories there (demonstrations must reach success)")
    if env_reward is not None:
        check_recorded_rewards(trajectories, *env_reward)
    policy_spaces = key_spaces(observation_space)
    # Every key either side reads; the policy's keys must match its space exactly.
    wanted: dict[str, Optional[spaces.Space]] = {**{k: None for k in model_keys}, **policy_spaces}
    obs: dict[str, list] = {k: [] for k in policy_spaces}
    nxt: dict[str, list] = {k: [] for k in policy_spaces}
    prev_f: dict[str, list] = {k: [] for k in model_keys}
    next_f: dict[str, list] = {k: [] for k in model_keys}
    actions, env_rewards, terminated, last = [], [], [], []
    for traj in trajectories:
        for key, space in wanted.items():
            if key not in traj.obs:
                raise ValueError(f"demonstration {traj.path} has no observation key {key!r} (it has {sorted(traj.obs)})")
            arr = traj.obs[key]
            if space is not None and (tuple(arr.shape[1:]) != tuple(space.shape) or arr.dtype != space.dtype):
                raise ValueError(f"demonstration {traj.path} key {key!r}: frames of shape {tuple(arr.shape[1:])} dtype "
                                 f"{arr.dtype}, the policy observes shape {tuple(space.shape)} dtype {space.dtype}")
        acts = np.asarray(traj.actions, np.float32).reshape(len(traj), -1)
        if acts.shape[1] != int(np.prod(action_space.shape)):
            raise ValueError(f"demonstration {traj.path}: actions of size {acts.shape[1]}, the env's action space is "
                             f"{action_space.shape}")
        for key in policy_spaces:
            obs[key].append(np.asarray(traj.obs[key][:-1]))
            nxt[key].append(np.asarray(traj.obs[key][1:]))
        for key in model_keys:
            prev_f[key].append(np.asarray(traj.obs[key][:-1]))
            next_f[key].append(np.asarray(traj.obs[key][1:]))
        actions.append(acts)
        env_rewards.append(np.asarray(traj.rewards, np.float64))
        terminated.append(np.asarray(traj.terminated, bool))
        last.append(np.arange(len(traj)) == len(traj) - 1)
    low, high = action_space.low.reshape(1, -1), action_space.high.reshape(1, -1)
    raw = np.concatenate(actions)
    # SAC stores actions rescaled to [-1, 1] (policy.scale_action); recorded actions are env actions.
    scaled = np.clip(2.0 * (raw - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)
    cat = lambda parts: {k: np.concatenate(v) for k, v in parts.items()}  # noqa: E731
    return Demonstrations(cat(obs), cat(nxt), scaled, np.concatenate(env_rewards), np.concatenate(terminated),
                          cat(prev_f), cat(next_f), len(trajectories), np.concatenate(last))


class RelabelingMixin:
    """Replay-buffer additions shared by the Box and Dict twins (see the module docstring); it
    comes first in their bases, so ``super()`` is SB3's ``ReplayBuffer`` or ``DictReplayBuffer``."""

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space, device: Any = "auto",
                 n_envs: int = 1, optimize_memory_usage: bool = False, handle_timeout_termination: bool = True, *,
                 frames: Optional[VecTransitionFrames] = None, reward_fn: Optional[RewardFunction] = None,
                 demos: Optional[Demonstrations] = None, demo_ratio: float = 0.5) -> None:
        if optimize_memory_usage:
            raise ValueError("relabelling replay buffers keep next observations: optimize_memory_usage must be False")
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False,  # type: ignore[call-arg]
                         handle_timeout_termination)
        if not 0.0 <= demo_ratio < 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1), got {demo_ratio}")
        self.frames = frames
        self.reward_fn = reward_fn
        self.demos = demos
        self.demo_ratio = float(demo_ratio) if demos is not None else 0.0
        self.relabels = 0
        shape = (self.buffer_size, self.n_envs)
        self.env_rewards = np.zeros(shape, np.float64)
        self.next_frames: Frames = {}
        self.prev_frames: Frames = {}
        if frames is not None:
            for key, space in frames.spaces.items():
                # np.zeros pages are committed as they are written: memory grows with what is stored.
                self.next_frames[key] = np.zeros((*shape, *space.shape), space.dtype)
                if frames.keep_prev:
                    self.prev_frames[key] = np.zeros((*shape, *space.shape), space.dtype)
        self._policy_key = next(iter(key_spaces(observation_space)))  # a Box's key in the demonstrations
        if demos is not None and reward_fn is not None:
            demos.rewards = reward_fn(demos.prev_frames, demos.next_frames, demos.env_rewards, demos.terminated, demos.last)

    @property
    def frame_memory_bytes(self) -> int:
        """Bytes reserved for the reward models' inputs (committed only as transitions arrive)."""
        return int(sum(v.nbytes for v in (*self.next_frames.values(), *self.prev_frames.values())))

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # noqa: ANN001 - SB3's signature
        last = self.frames.last if self.frames is not None else None
        if last is not None:
            self._record_frames(last)
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]

    def _record_frames(self, last: Any) -> None:
        for key, store in self.next_frames.items():
            store[self.pos] = last.next[key]
        for key, store in self.prev_frames.items():
            store[self.pos] = last.prev[key]
        self.env_rewards[self.pos] = last.env_reward

    def stored(self) -> int:
        """Transitions stored per env."""
        return self.buffer_size if self.full else self.pos

    def relabel(self) -> int:
        """Recompute every stored reward (online and demonstrations) with the current models;
        return how many transitions were relabelled."""
        if self.reward_fn is None:
            raise ValueError("this replay buffer was built without a reward function to relabel with")
        n = self.stored()
        rows = lambda a: a[:n].reshape(n * self.n_envs, *a.shape[2:])  # noqa: E731
        terminated = (self.dones[:n] * (1 - self.timeouts[:n])).astype(bool)
        rewards = self.reward_fn({k: rows(v) for k, v in self.prev_frames.items()},
                                 {k: rows(v) for k, v in self.next_frames.items()},
                                 rows(self.env_rewards), rows(terminated), rows(self.dones[:n].astype(bool)))
        self.rewards[:n] = rewards.reshape(n, self.n_envs)
        count = n * self.n_envs
        if self.demos is not None:
            d = self.demos
            d.rewards = self.reward_fn(d.prev_frames, d.next_frames, d.env_rewards, d.terminated, d.last)
            count += len(d)
        self.relabels += 1
        return count

    def _demo_part(self, batch_size: int) -> int:
        return int(round(self.demo_ratio * batch_size)) if self.demos is not None else 0

    def _demo_arrays(self, n: int, env: Any) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray]:
        d = self.demos
        idx = np.random.randint(0, len(d), size=n)
        obs = {k: v[idx] for k, v in d.obs.items()}
        nxt = {k: v[idx] for k, v in d.next_obs.items()}
        rewards = (d.rewards if d.rewards is not None else d.env_rewards)[idx].astype(np.float32).reshape(-1, 1)
        return obs, nxt, d.actions[idx], d.terminated[idx].astype(np.float32).reshape(-1, 1), rewards


class RelabelingReplayBuffer(RelabelingMixin, ReplayBuffer):
    """SB3 ``ReplayBuffer`` (Box observations) with stored model inputs, relabelling and demonstrations."""

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        n_demo = self._demo_part(batch_size)
        online = super().sample(batch_size - n_demo, env)
        if n_demo == 0:
            return online
        obs, nxt, actions, dones, rewards = self._demo_arrays(n_demo, env)
        demo = ReplayBufferSamples(*map(self.to_torch, (self._normalize_obs(obs[self._policy_key], env), actions,
                                                       self._normalize_obs(nxt[self._policy_key], env), dones,
                                                       self._normalize_reward(rewards, env))))
        return ReplayBufferSamples(*(th.cat([a, b]) for a, b in zip(online[:5], demo[:5])))


class RelabelingDictReplayBuffer(RelabelingMixin, DictReplayBuffer):
    """SB3 ``DictReplayBuffer`` twin of :class:`RelabelingReplayBuffer`."""

    def sample(self, batch_size: int, env: Any = None) -> DictReplayBufferSamples:
        n_demo = self._demo_part(batch_size)
        online = super().sample(batch_size - n_demo, env)
        if n_demo == 0:
            return online
        obs, nxt, actions, dones, rewards = self._demo_arrays(n_demo, env)
        obs, nxt = self._normalize_obs(obs, env), self._normalize_obs(nxt, env)
        return DictReplayBufferSamples(
            observations={k: th.cat([v, self.to_torch(obs[k])]) for k, v in online.observations.items()},
            actions=th.cat([online.actions, self.to_torch(actions)]),
            next_observations={k: th.cat([v, self.to_torch(nxt[k])]) for k, v in online.next_observations.items()},
            dones=th.cat([online.dones, self.to_torch(dones)]),
            rewards=th.cat([online.rewards, self.to_torch(self._normalize_reward(rewards, env))]),
        )


def replay_buffer_class(observation_space: spaces.Space) -> type[ReplayBuffer]:
    """The relabelling twin that fits the policy's observation space."""
    return RelabelingDictReplayBuffer if isinstance(observation_space, spaces.Dict) else RelabelingReplayBuffer
