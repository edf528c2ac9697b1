"""``TrajectoryRecorder``: a transparent wrapper that saves every finished episode to disk.

>>> import tempfile, gymnasium as gym
>>> from collectors import TrajectoryRecorder, load_trajectories
>>> out = tempfile.mkdtemp()
>>> env = TrajectoryRecorder(gym.make("CartPole-v1", max_episode_steps=5), out, success_key="ok",
...                          require_success_key=False)
>>> _ = env.reset(seed=0)
>>> for _ in range(5):
...     _ = env.step(0)
>>> env.close()
>>> [(len(t), t.obs["state"].shape, t.success) for t in load_trajectories(out)]
[(5, (6, 4), False)]
"""

from __future__ import annotations

import collections
import json
import math
import os
import socket
import time
from typing import Any, Mapping, Sequence, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from collectors.atomic import json_default
from collectors.columns import Column, EpisodeSteps
from collectors.format import RESERVED_META_KEYS, SPLITS
from collectors.frames import FrameBuffer
from collectors.process_writer import ProcessWriter, open_writer
from collectors.root import (
    _ProcessToken,
    count_trajectories,
    new_trajectory_id,
    prepare_root,
    remove_stale_tmp,
)
from collectors.writer import TrajectoryWriter, WriteJob, WriteStats
from envs.spaces import key_spaces

#: Frames preallocated for an episode when the env declares no ``max_episode_steps``.
DEFAULT_CAPACITY = 256
_MISSING = object()
#: The smallest float64 that rounds to float32 0.5 (ties to even): v >= this <=> float32(v) >= 0.5.
_HALF_AS_FLOAT32 = 0.5 - 2.0**-26


def as_flag(value: Any) -> float:
    """A success-like info value (bool, number, size-1 array or tensor) as 0.0 / 1.0 / float."""
    if type(value) is bool:  # the common case, kept fast: this runs on every step
        return 1.0 if value else 0.0
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"expected a scalar flag, got an array of shape {arr.shape}")
    return float(arr.reshape(()).item())


class TrajectoryRecorder(gym.Wrapper):
    """Record each finished episode under ``out_dir/positive/`` or ``out_dir/negative/``.

    Observations, rewards, flags and infos pass through unchanged; the recorder only copies
    them into per-episode buffers. When an episode ends (``terminated`` or ``truncated``) it is
    written in the format of :mod:`collectors.format`: ``obs.<key>.npy`` (T+1 frames, the reset
    frame first), ``actions.npy``, ``rewards.npy``, ``labels.npy`` (``labels[t]`` is
    ``info[success_key]`` of observation ``t``; the reset frame's comes from the reset info,
    0 if absent there), ``terminated.npy``, ``truncated.npy``, ``info.<key>.npy`` and
    ``meta.json``. It goes to ``positive/`` if any label is >= 0.5 or any step info has a true
    ``success_once``, else to ``negative/``.

    Args:
        env: the env to record. Its observation keys follow :mod:`envs.spaces`.
        out_dir: buffer root; created if needed. Several recorders (processes) may share it.
        keys: observation keys to store (default: all).
        success_key: info key holding the per-frame success flag. If a step info lacks it the
            first ``step`` raises ``KeyError`` listing the keys the info does have.
        info_keys: extra info keys stored per frame (e.g. stage flags), T+1 aligned with the
            observations (reset info first; a key absent from the reset info is stored as 0
            there). A step info lacking one raises ``KeyError``.
        max_positive, max_negative: caps on the trajectories in each split, counted on disk,
            so they hold across restarts and across processes sharing ``out_dir``. Episodes
            for a full split are not written; when both are full nothing is buffered.
        async_write: write off the stepping thread; ``close()`` (or ``flush()``) waits for the
            writes and raises any error they hit (errors also surface at a later ``reset``).
            ``True`` (or ``"process"``): a writer process fed through shared memory
            (:mod:`collectors.process_writer`); episodes cost the env loop only their buffering
            and one small message, and survive this process being killed once handed over.
            ``True`` falls back to a thread, with a warning, where a process cannot be started
            (non-Linux); ``"process"`` raises instead. ``"thread"``: a writer thread in this
            process (it contends with the env for the GIL: +88 % CPU in the env's process
            against +11 % for ``"process"`` in benchmarks/results/collect_overhead.md).
            ``False`` (or ``"sync"``): write on the stepping thread when the episode ends.
        metadata: extra JSON-serialisable entries for every ``meta.json`` (e.g. the policy).
        fsync: fsync each trajectory before renaming it into place (survives power loss).
        require_success_key: set False for envs without a success flag (or with one only on some
            frames): a frame whose info lacks it is *unlabelled*, stored as a NaN label, and its
            trajectory's ``meta.json`` says ``"labelled": false`` until ``rewardswap label``
            (:mod:`collectors.labelling`) marks it; trainers refuse it before then.

    Episodes cut short by ``reset()`` before they ended, or still running at ``close()``, are
    **discarded** (counted in ``episodes_discarded``), never written: their last label would
    not describe how they ended.

    Example, a scripted expert on a built-in env (its episodes end on success):

    >>> import tempfile, envs
    >>> from collectors import load_trajectories
    >>> out = tempfile.mkdtemp()
    >>> env = TrajectoryRecorder(envs.make("PointReach-v0", seed=0), out, async_write=True)
    >>> expert = envs.expert_policy(env)
    >>> obs, _ = env.reset(seed=0)
    >>> done = False
    >>> while not done:
    ...     obs, _, terminated, truncated, _ = env.step(expert(obs))
    ...     done = terminated or truncated
    >>> env.close()  # waits for the writer
    >>> [(t.success, float(t.labels[-1]), len(t.obs["state"]) == len(t) + 1) for t in load_trajectories(out)]
    [(True, 1.0, True)]
    """

    def __init__(
        self,
        env: gym.Env,
        out_dir: str | os.PathLike[str],
        *,
        keys: Sequence[str] | None = None,
        success_key: str = "success",
        info_keys: Sequence[str] = (),
        max_positive: int | None = None,
        max_negative: int | None = None,
        async_write: bool | str = False,
        metadata: Mapping[str, Any] | None = None,
        fsync: bool = False,
        require_success_key: bool = True,
    ) -> None:
        super().__init__(env)
        self.out_dir = prepare_root(out_dir)
        remove_stale_tmp(self.out_dir)
        available = key_spaces(env.observation_space)
        self.keys: tuple[str, ...] = tuple(available) if keys is None else tuple(keys)
        unknown = [k for k in self.keys if k not in available]
        if unknown or not self.keys:
            raise ValueError(f"keys {list(self.keys)!r} must be a non-empty subset of the observation keys {list(available)}")
        # Decided once from the space (envs.spaces.obs_to_dict decides it per call).
        self._obs_is_dict = isinstance(env.observation_space, spaces.Dict)
        self._obs_specs = {k: self._fixed_spec(f"observation {k!r}", available[k]) for k in self.keys}
        self._action_spec = self._fixed_spec("action", env.action_space)
        self.success_key = success_key
        self.require_success_key = require_success_key
        self.info_keys: tuple[str, ...] = tuple(info_keys)
        for name, cap in (("max_positive", max_positive), ("max_negative", max_negative)):
            if cap is not None and (not isinstance(cap, (int, np.integer)) or cap < 0):
                raise ValueError(f"{name} must be None or an int >= 0, got {cap!r}")
        self.caps: dict[str, int | None] = {"positive": max_positive, "negative": max_negative}
        self.metadata = dict(metadata or {})
        reserved = sorted(set(self.metadata) & RESERVED_META_KEYS)
        if reserved:
            raise ValueError(f"metadata keys {reserved} are written by the recorder itself; choose other names")
        try:  # here, not in the writer after the first episode
            json.dumps(self.metadata, default=json_default)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be JSON-serialisable (it goes into every meta.json): {exc}") from None
        self._writer: TrajectoryWriter | ProcessWriter = open_writer(self.out_dir, async_write, fsync=fsync)
        self._dropped = self._writer.stats.dropped_full  # one dict for the writer's life
        spec = getattr(env, "spec", None)
        self.env_id: str | None = spec.id if spec is not None else None
        self._host = socket.gethostname()
        max_steps = getattr(spec, "max_episode_steps", None) if spec is not None else None
        self._capacity = int(max_steps) + 1 if max_steps else DEFAULT_CAPACITY
        self._full = {s: self._split_full(s) for s in SPLITS}

        self.episodes_started = 0
        self.episodes_finished = 0
        self.episodes_discarded = 0
        self._recording = False  # an episode is being buffered
        self._closed = False
        self._seed: int | None = None
        self._last_seed: int | None = None
        self._episodes_since_seed = 0
        self._obs_cols: dict[str, FrameBuffer] = {}
        self._single_obs_col: FrameBuffer | None = None
        self._action_col: FrameBuffer
        self._info_cols: dict[str, FrameBuffer] = {}
        new = self._writer.new_buffer
        self._use_buffers({k: new(*self._obs_specs[k], self._capacity) for k in self.keys},
                          new(*self._action_spec, self._capacity), {})
        # Buffers the writer thread has finished with (deque: thread-safe append/popleft).
        self._spare: collections.deque[list[dict[str, FrameBuffer]]] = collections.deque()
        self._reset_info_missing: list[str] = []
        #: per step: (reward, terminated, truncated) as the env returned them, and the label
        self._steps: list[tuple[Any, Any, Any, float]] = []
        self._reset_label = 0.0
        self._labelled_success = False  # a label so far was a success (>= 0.5 as float32)
        self._steps_builtin = True  # every reward a float and flag a bool so far (EpisodeSteps)
        self._success_once = False
        self._reset_label_missing = False
        self._unlabelled_frames = 0  # frames whose info lacked the flag (require_success_key=False)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._writer.raise_pending_error()
        if self._recording:
            self.episodes_discarded += 1  # interrupted before it ended: see class docstring
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._last_seed, self._episodes_since_seed = seed, 0
        else:
            self._episodes_since_seed += 1
        self._seed = seed
        self.episodes_started += 1
        self._start_episode(obs, info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self._recording:
            return obs, reward, terminated, truncated, info
        # Check the info before buffering anything, so a raise leaves the buffers consistent.
        flag = info.get(self.success_key, _MISSING)
        if flag is _MISSING:
            if self.require_success_key:
                self._recording, self.episodes_discarded = False, self.episodes_discarded + 1
                raise KeyError(self._missing_key_message(self.success_key, info, "success_key"))
            flag = math.nan
        # The label, as float(flag): kept per step (not per episode) so the episode's end, on
        # the env's thread, needs no pass over the steps to route it.
        if flag is False:
            label = 0.0
        elif flag is math.nan:
            label = math.nan
            self._unlabelled_frames += 1
        else:
            label = 1.0 if flag is True else self._label_of(flag)
            if label >= _HALF_AS_FLOAT32:  # as float32 >= 0.5, the stored label's test; NaN is not
                self._labelled_success = True
        if self.info_keys:
            for key in self.info_keys:
                if key not in info:
                    self._recording, self.episodes_discarded = False, self.episodes_discarded + 1
                    raise KeyError(self._missing_key_message(key, info, "info_keys"))
            for key in self.info_keys:
                self._append_info(key, info[key])
        # This runs on every env step: one copy per array, scalars kept raw in one tuple and
        # converted once per episode. FrameBuffer.append inlined for the single-array observation
        # and the action (a method call is ~5 % of the recorder's per-step cost).
        col = self._single_obs_col
        if col is None:  # a Dict observation: one buffer per key
            for key, col in self._obs_cols.items():
                col.append(obs[key])
        elif col.n < len(col.array):  # a plain Box observation with room left
            col.array[col.n] = obs
            col.n += 1
        else:
            col.append(obs)  # grows the buffer
        col = self._action_col
        if col.n < len(col.array):
            col.array[col.n] = action
            col.n += 1
        else:
            col.append(action)
        if type(reward) is not float or type(terminated) is not bool or type(truncated) is not bool:
            self._steps_builtin = False
        self._steps.append((reward, terminated, truncated, label))
        if not self._success_once and "success_once" in info:
            self._success_once = as_flag(info["success_once"]) >= 0.5
        if terminated or truncated:
            self._finish_episode()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Flush pending writes (raising any write error), discard an unfinished episode, close the env."""
        if self._recording:
            self.episodes_discarded += 1
            self._recording = False
        try:
            self._writer.close()
        finally:
            # Drop the buffers now: with the process writer they are shared memory, freed here.
            self._closed = True
            self._spare.clear()
            self._obs_cols, self._info_cols, self._single_obs_col = {}, {}, None
            self._action_col = FrameBuffer((), np.dtype(np.uint8), 1)
            super().close()

    # ------------------------------------------------------------------ public extras
    def flush(self) -> None:
        """Block until every finished episode is on disk; raise a write error if one happened."""
        self._writer.flush()

    @property
    def write_mode(self) -> str:
        """How episodes are written: ``"sync"``, ``"thread"`` or ``"process"`` (see ``async_write``)."""
        return self._writer.kind

    @property
    def stats(self) -> WriteStats:
        """Trajectories written / dropped (cap) per split, frames and bytes, paths written."""
        return self._writer.stats

    @property
    def full(self) -> bool:
        """True when both splits have reached their caps (nothing more will be written).

        Counted on disk (only for capped splits), so trajectories written by other processes
        sharing ``out_dir`` count too.
        """
        for split in SPLITS:
            if not self._full[split] and self._split_full(split):
                self._full[split] = True
        return all(self._full.values())

    # ------------------------------------------------------------------ internals
    def _use_buffers(self, obs_cols: dict[str, FrameBuffer], action_col: FrameBuffer,
                     info_cols: dict[str, FrameBuffer]) -> None:
        self._obs_cols, self._action_col, self._info_cols = obs_cols, action_col, info_cols
        self._single_obs_col = None if self._obs_is_dict else obs_cols[self.keys[0]]

    def _take_spare_buffers(self) -> tuple[dict[str, FrameBuffer], FrameBuffer, dict[str, FrameBuffer]]:
        try:
            obs_cols, action, info_cols = self._spare.popleft()
            return obs_cols, action[""], info_cols
        except IndexError:
            new = self._writer.new_buffer
            return (
                {k: new(c.shape, c.dtype, c.capacity) for k, c in self._obs_cols.items()},
                new(self._action_col.shape, self._action_col.dtype, self._action_col.capacity),
                {k: new(c.shape, c.dtype, c.capacity) for k, c in self._info_cols.items()},
            )

    @staticmethod
    def _fixed_spec(what: str, space: spaces.Space) -> tuple[tuple[int, ...], np.dtype]:
        if space.shape is None or space.dtype is None:
            raise TypeError(
                f"TrajectoryRecorder stores fixed-shape arrays; the {what} space {space} has no fixed shape/dtype"
            )
        return tuple(space.shape), np.dtype(space.dtype)

    def _split_full(self, split: str) -> bool:
        cap = self.caps[split]
        return cap is not None and count_trajectories(self.out_dir, split) >= cap

    def _missing_key_message(self, key: str, info: Mapping[str, Any], arg: str) -> str:
        return (
            f"TrajectoryRecorder: the step info has no {key!r} key (set by {arg}); "
            f"info keys are {sorted(map(str, info))}. Pass {arg}= naming one of them"
            + (", or require_success_key=False to record without labels" if arg == "success_key" else "")
        )

    def _start_episode(self, obs: Any, info: Mapping[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("TrajectoryRecorder is closed; make a new one to record more episodes")
        self._recording = not self.full
        if not self._recording:
            return
        for col in (*self._obs_cols.values(), self._action_col, *self._info_cols.values()):
            col.n = 0
        self._steps = []
        if self._single_obs_col is not None:
            self._single_obs_col.append(obs)
        else:
            for key, col in self._obs_cols.items():
                col.append(obs[key])
        self._reset_label_missing = self.success_key not in info
        self._unlabelled_frames = int(self._reset_label_missing and not self.require_success_key)
        missing_label = math.nan if self._unlabelled_frames else 0.0
        self._reset_label = missing_label if self._reset_label_missing else as_flag(info[self.success_key])
        self._labelled_success = self._reset_label >= _HALF_AS_FLOAT32
        self._steps_builtin = True
        self._success_once = "success_once" in info and as_flag(info["success_once"]) >= 0.5
        self._reset_info_missing = []
        for key in self.info_keys:
            if key in info:
                self._append_info(key, info[key])
            else:
                self._reset_info_missing.append(key)

    def _label_of(self, flag: Any) -> float:
        try:
            return as_flag(flag)
        except (TypeError, ValueError) as exc:
            self._recording, self.episodes_discarded = False, self.episodes_discarded + 1
            raise ValueError(f"TrajectoryRecorder: info[{self.success_key!r}] = {flag!r} is not a success flag "
                             f"(a bool or a number, one element): {exc}; the episode is discarded") from exc

    def _append_info(self, key: str, value: Any) -> None:
        col = self._info_cols.get(key)
        if col is None:
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise TypeError(f"info[{key!r}] = {value!r} is not numeric; only array-like info values can be stored")
            col = self._info_cols[key] = self._writer.new_buffer(arr.shape, arr.dtype, self._capacity)
        if key in self._reset_info_missing and col.n == 0:
            col.append(np.zeros(col.array.shape[1:], col.array.dtype))  # reset frame placeholder
        col.append(value)

    def _finish_episode(self) -> None:
        self._recording = False
        self.episodes_finished += 1
        # Only what routing needs runs here, on the env's thread: the per-step columns, their
        # checks and the return are built by the writer (see EpisodeSteps).
        success = self._labelled_success or self._success_once
        split = "positive" if success else "negative"
        if self._full[split] or self._split_full(split):
            self._full[split] = True
            self._writer.note_dropped(split)
            return
        fields: dict[str, np.ndarray | FrameBuffer | Column] = {f"obs.{k}": col for k, col in self._obs_cols.items()}
        fields["actions"] = self._action_col
        for key in self.info_keys:
            fields[f"info.{key}"] = self._info_cols[key]
        meta = {
            "env_id": self.env_id,
            "seed": self._seed,
            "seed_chain": {"seed": self._last_seed, "episodes_since": self._episodes_since_seed},
            "success": success,
            # False: some frame had no flag (a NaN label); collectors.labelling marks it later
            "labelled": not self._unlabelled_frames,
            "success_key": self.success_key,
            "success_once": self._success_once,
            "reset_label_from_info": not self._reset_label_missing,
            "info_missing_at_reset": self._reset_info_missing,  # a new list every episode
            "obs_keys": self.keys,
            "info_keys": self.info_keys,
            "episode_index": self.episodes_started - 1,
            "created_unix": time.time(),
            "host": self._host,
            "pid": _ProcessToken.pid,
            "recorder": "collectors.TrajectoryRecorder",
            **self.metadata,
        }
        job = WriteJob(split, new_trajectory_id(), fields, meta, cap=self.caps[split],
                       steps=EpisodeSteps(self._reset_label, self._steps, builtin=self._steps_builtin))
        writer = self._writer
        if writer.async_write:
            # The writer owns these buffers until it has written them; the next episode takes
            # recycled ones (reusing warm memory: fresh pages cost a fault each). The closure
            # holds the deque, not the recorder, so a dropped recorder is freed by refcounting.
            handed, spare = [self._obs_cols, {"": self._action_col}, self._info_cols], self._spare
            job.release = lambda: spare.append(handed)
        dropped = self._dropped  # the writer's counts, read without polling it
        before = dropped[split]
        writer.submit(job)  # if this raises, the job was not taken and the buffers stay ours
        if writer.async_write:
            self._use_buffers(*self._take_spare_buffers())
        if dropped[split] != before:
            self._full[split] = True


__all__ = ["TrajectoryRecorder", "as_flag"]
