"""Resumable runs: ``train-agent --checkpoint-every N`` saves, ``--resume`` continues from the last save.

A checkpoint is the directory ``RUN_DIR/checkpoint/``, built beside it and swapped in by renames
(a kill at any moment leaves the previous one or the new one, never a mix), holding:

* ``model.zip``: SB3's own save (weights, optimisers, SAC's entropy coefficient), read back as
  tensors into the agent the resumed run builds (:mod:`agents.warm_start`), never unpickled;
* ``replay/``: the replay buffer's arrays as ``.npy`` (the stored reward inputs and env rewards of
  the relabelling buffer included), loaded with ``allow_pickle=False``;
* ``obs_normalization.npz``: the observation statistics, where the run normalises;
* ``state.json``, written last: step counter, updates, episodes, and the state of every part that
  keeps one (the evaluation curve, the reward monitor, the refits: records, the model in use, the
  random generator), wall and reward-inference time so far.

``RUN_DIR/config.json`` is written when the run starts; ``--resume`` refuses a run whose settings
differ from it. Labels need nothing here: the queue's answers are on disk as they arrive and a
restart reuses them without charging them again. Not kept, by design: episodes in progress (the
envs start from reset), the refit's ring of recent frames (the next refit asks about frames seen
since the resume) and, for PPO, the rollout being collected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
from typing import Any, Optional, Protocol, Sequence

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from agents.config import TrainConfig, settings_differences
from agents.warm_start import NORMALIZATION_FILE, resolve_source, save_normalization, warm_start
from collectors.atomic import write_json_atomic

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE = "config.json"
_STATE_FILE = "state.json"
#: SB3 counters restored with the weights: the step count drives schedules, learning_starts and logging
_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num")


class Stateful(Protocol):
    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def write_config(run_dir: pathlib.Path, cfg: TrainConfig) -> None:
    """The run's settings, written at its start: what ``--resume`` compares."""
    write_json_atomic(run_dir / CONFIG_FILE, {"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str))})


def checkpoint_dir(run_dir: pathlib.Path) -> Optional[pathlib.Path]:
    """The complete checkpoint of ``run_dir`` (``checkpoint/``, or ``checkpoint.old/`` when a save
    was cut between its two renames), else None."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        if (run_dir / name / _STATE_FILE).is_file():
            return run_dir / name
    return None


def resumable(run_dir: pathlib.Path, cfg: TrainConfig) -> bool:
    """Whether ``run_dir`` holds a checkpoint of a run with ``cfg``'s settings (``bench --resume``)."""
    try:
        check_resumable(run_dir, cfg)
    except (OSError, ValueError, KeyError):
        return False
    return True


def with_resume(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` set to resume when its logdir holds a checkpoint of a run with its settings, else to
    train afresh (``bench --resume``, and a bench run started again after its process died)."""
    return dataclasses.replace(cfg, resume=cfg.checkpoint_every is not None and resumable(pathlib.Path(cfg.logdir), cfg))


def check_resumable(run_dir: pathlib.Path, cfg: TrainConfig) -> pathlib.Path:
    """The checkpoint ``--resume`` continues from; ``ValueError`` when there is none or the settings changed."""
    found = checkpoint_dir(run_dir)
    if found is None:
        raise ValueError(f"--resume {run_dir}: no checkpoint there (a run saves one every --checkpoint-every steps; "
                         "this one stopped before its first, or finished and removed it)")
    saved = json.loads((run_dir / CONFIG_FILE).read_text())["config"]
    differences = settings_differences(saved, cfg)
    if differences:
        raise ValueError(f"--resume {run_dir}: the settings differ from the run's ({'; '.join(differences)}): resume "
                         "with the same command, or start a new run in another --logdir")
    return found


def remove_checkpoints(run_dir: pathlib.Path) -> None:
    """Remove ``run_dir``'s checkpoint: the run finished (``eval.json`` marks it), or a new run starts there."""
    for suffix in ("", ".new", ".old"):
        shutil.rmtree(run_dir / f"{CHECKPOINT_DIR}{suffix}", ignore_errors=True)


def _buffer_arrays(buffer: Any) -> dict[str, np.ndarray]:
    """Every per-transition array of an SB3 replay buffer (Box or Dict; the relabelling extras too)."""
    arrays: dict[str, np.ndarray] = {}
    for name in ("observations", "next_observations", "next_frames", "prev_frames"):
        value = getattr(buffer, name, None)
        if isinstance(value, dict):
            arrays.update({f"{name}.{key}": array for key, array in value.items()})
        elif value is not None:
            arrays[name] = value
    for name in ("actions", "rewards", "dones", "timeouts", "env_rewards"):
        if getattr(buffer, name, None) is not None:
            arrays[name] = getattr(buffer, name)
    return arrays


def save_replay(buffer: Any, directory: pathlib.Path) -> dict[str, Any]:
    """Write the stored rows of ``buffer`` to ``directory``; return its position counters."""
    directory.mkdir(parents=True)
    rows = buffer.buffer_size if buffer.full else buffer.pos
    for name, array in _buffer_arrays(buffer).items():
        np.save(directory / f"{name}.npy", array[:rows], allow_pickle=False)
    return {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": int(rows)}


def load_replay(buffer: Any, directory: pathlib.Path, counters: dict[str, Any]) -> None:
    """Fill a freshly built ``buffer`` from :func:`save_replay`'s files (``ValueError`` names a misfit)."""
    rows = int(counters["rows"])
    for name, array in _buffer_arrays(buffer).items():
        path = directory / f"{name}.npy"
        if not path.is_file():
            raise ValueError(f"--resume: {path} is missing (the checkpoint's replay buffer has no {name!r})")
        saved = np.load(path, allow_pickle=False)
        if saved.shape != (rows, *array.shape[1:]) or saved.dtype != array.dtype:
            raise ValueError(f"--resume: {path} holds {saved.shape} {saved.dtype}, this run's buffer stores "
                             f"{(rows, *array.shape[1:])} {array.dtype}")
        array[:rows] = saved
    buffer.pos, buffer.full = int(counters["pos"]), bool(counters["full"])


class RunCheckpoint(BaseCallback):
    """Saves a checkpoint at the end of the first rollout past every ``every`` env steps (after the
    refits, which run at rollout ends too)."""

    def __init__(self, run_dir: pathlib.Path, every: int, parts: dict[str, Optional[Stateful]],
                 normalize: Optional[VecNormalize], timers: Sequence[Any], wall_before: float = 0.0) -> None:
        super().__init__()
        self.run_dir, self.every = pathlib.Path(run_dir), int(every)
        self.parts = {name: part for name, part in parts.items() if part is not None}
        self.normalize, self.timers = normalize, list(timers)
        self.wall_before = wall_before
        self.started = time.perf_counter()
        self.saves = 0
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.num_timesteps >= self._next and self.model.num_timesteps < self.model._total_timesteps:
            self._next = (self.model.num_timesteps // self.every + 1) * self.every
            self.save()

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def save(self) -> pathlib.Path:
        final, new, old = (self.run_dir / f"{CHECKPOINT_DIR}{suffix}" for suffix in ("", ".new", ".old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        self.model.save(new / "model.zip")
        state: dict[str, Any] = {"counters": {name: int(getattr(self.model, name)) for name in _COUNTERS},
                                 "wall_seconds": self.wall_seconds(),
                                 "inference_seconds": [float(t.seconds) for t in self.timers],
                                 "parts": {name: part.state() for name, part in self.parts.items()}}
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            state["replay"] = save_replay(buffer, new / "replay")
        if self.normalize is not None:
            save_normalization(self.normalize, new / NORMALIZATION_FILE)
        write_json_atomic(new / _STATE_FILE, state)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
        self.saves += 1
        return final



def restore(found: pathlib.Path, agent: BaseAlgorithm, algo: str, normalize: Optional[VecNormalize],
            parts: dict[str, Optional[Stateful]], timers: Sequence[Any]) -> dict[str, Any]:
    """Load checkpoint ``found`` into a freshly built run; return its ``state.json``."""
    state = json.loads((found / _STATE_FILE).read_text())
    warm_start(agent, resolve_source(found / "model.zip"), algo, normalize)  # statistics: the npz beside it
    for name, value in state["counters"].items():
        setattr(agent, name, value)
    if "replay" in state:
        load_replay(agent.replay_buffer, found / "replay", state["replay"])
    for name, part in parts.items():
        if part is not None and name in state["parts"]:
            part.load_state(state["parts"][name])
    for timer, seconds in zip(timers, state["inference_seconds"]):
        timer.seconds = seconds
    return state


__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "RunCheckpoint", "check_resumable", "checkpoint_dir", "load_replay",
           "remove_checkpoints", "restore", "resumable", "save_replay", "with_resume", "write_config"]
