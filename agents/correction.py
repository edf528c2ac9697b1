"""Wiring of the reward monitor, in-training refits, replay relabelling and demonstrations into a run.

``train-agent`` calls these in order: :func:`check_settings` (with its config), :func:`frame_store` (under the reward wrappers), then, with
the stack built, :func:`replay_kwargs` (SAC only) and :func:`callbacks`. Each piece lives in its
own module: :mod:`agents.monitor`, :mod:`agents.refit`, :mod:`agents.replay`,
:mod:`reward_wrappers.transitions`.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.monitor import RewardMonitor
from agents.refit import RefitCallback, labels_per_refit
from agents.replay import load_demonstrations, replay_buffer_class
from reward_wrappers.base import RewardModel, SwappableModel
from reward_wrappers.transitions import (
    SuccessLabeller,
    VecTransitionFrames,
    check_relabelable,
    needs_prev,
    reward_cores,
    transition_rewards,
)

#: The refit's ring of recent frames holds at most this many bytes (64x64 rgb: ~87k frames).
RECENT_FRAMES_BYTES = 1 << 30


def check_settings(cfg: Any, kind: str) -> None:
    """Errors for refit, demonstration and monitor settings that cannot work together."""
    if cfg.refit_every is not None:
        if kind != "classifier":
            raise ValueError(f"--refit-every refits a success classifier; --reward {cfg.reward} is not classifier:PATH")
        if cfg.refit_every <= 0 or cfg.label_budget <= 0:
            raise ValueError(f"--refit-every and --label-budget must be positive (got {cfg.refit_every}, {cfg.label_budget})")
        if not 0.0 < cfg.refit_precision <= 1.0:
            raise ValueError(f"--refit-precision must be in (0, 1], got {cfg.refit_precision}")
        if cfg.refit_epochs <= 0:
            raise ValueError(f"--refit-epochs must be positive, got {cfg.refit_epochs}")
        if cfg.refit_data is not None and not pathlib.Path(cfg.refit_data).is_dir():
            raise FileNotFoundError(f"--refit-data: buffer directory {cfg.refit_data} does not exist")
    elif cfg.label_budget:
        raise ValueError("--label-budget is spent by refits: give --refit-every N too")
    if cfg.demos is not None:
        if cfg.algo != "sac":
            raise ValueError("--demos puts demonstrations in SAC's replay buffer: use --algo sac")
        if kind in ("env", "sparse"):
            raise ValueError(f"--demos takes the demonstrations' rewards from the reward model; --reward {cfg.reward} has "
                             "none (the recorded rewards may come from another reward mode): use a learned reward")
        if not pathlib.Path(cfg.demos).is_dir():
            raise FileNotFoundError(f"--demos: buffer directory {cfg.demos} does not exist")
    if not 0.0 <= cfg.demo_ratio < 1.0:
        raise ValueError(f"--demo-ratio must be in [0, 1), got {cfg.demo_ratio}")
    if not 0.0 < cfg.monitor_min_precision <= 1.0:
        raise ValueError(f"--monitor-min-precision must be in (0, 1], got {cfg.monitor_min_precision}")


def model_input_keys(models: Sequence[RewardModel]) -> tuple[str, ...]:
    keys: list[str] = []
    for model in models:
        for key in (model.spec.inputs if model.spec is not None else ()):
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def frame_store(venv: VecEnv, cfg: Any, models: Sequence[RewardModel]) -> tuple[VecEnv, Optional[VecTransitionFrames]]:
    """Wrap ``venv`` with a :class:`VecTransitionFrames` when refits or SAC's replay need one."""
    if cfg.refit_every is None and not (cfg.algo == "sac" and cfg.demos is not None):
        return venv, None
    frames = VecTransitionFrames(venv, model_input_keys(models), recent=cfg.refit_every or 0,
                                 max_recent_bytes=RECENT_FRAMES_BYTES)
    return frames, frames


def replay_kwargs(cfg: Any, venv: VecEnv, frames: VecTransitionFrames) -> dict[str, Any]:
    """SAC keyword arguments for a relabelling replay buffer (demonstrations included) over ``venv``."""
    cores = reward_cores(venv)
    check_relabelable(cores)
    frames.keep_prev = needs_prev(cores)

    def reward_fn(prev, nxt, env_reward, terminated):  # noqa: ANN001, ANN202 - RewardFunction
        return transition_rewards(cores, prev, nxt, env_reward, terminated)

    demos = None
    if cfg.demos is not None:
        demos = load_demonstrations(cfg.demos, venv.observation_space, venv.action_space, frames.keys)
    return {
        "replay_buffer_class": replay_buffer_class(venv.observation_space),
        "replay_buffer_kwargs": {"frames": frames, "reward_fn": reward_fn, "demos": demos, "demo_ratio": cfg.demo_ratio},
    }


def callbacks(cfg: Any, frames: Optional[VecTransitionFrames], live: Optional[SwappableModel], run_dir: pathlib.Path,
              has_reward_model: bool, verbose: int = 1) -> tuple[list[BaseCallback], Optional[RewardMonitor], Optional[RefitCallback]]:
    """The monitor (on whenever a reward model pays the agent and ``cfg.monitor``) and the refit."""
    labeller = None
    if cfg.refit_every is not None:
        labeller = SuccessLabeller(frames, cfg.label_budget)
    monitor = None
    if cfg.monitor and has_reward_model:
        monitor = RewardMonitor(min_precision=cfg.monitor_min_precision, log_every=max(cfg.n_envs, cfg.eval_freq // 4),
                                report_path=run_dir / "reward_monitor.json", label_counter=labeller, verbose=verbose)
    refit = None
    if labeller is not None:
        base = cfg.refit_data or live.current.metadata.get("data")
        if not base or not pathlib.Path(base).is_dir():
            raise ValueError(f"--refit-every: the classifier's original buffers ({base!r} in its checkpoint) are not a "
                             "directory here; give --refit-data DIR")
        refit = RefitCallback(model=live, frames=frames, labeller=labeller, base_data=base, every=cfg.refit_every,
                              labels_per_refit=labels_per_refit(cfg.label_budget, cfg.steps, cfg.refit_every),
                              run_dir=run_dir, epochs=cfg.refit_epochs, seed=cfg.seed, monitor=monitor,
                              precision=cfg.refit_precision, verbose=verbose)
    return [c for c in (monitor, refit) if c is not None], monitor, refit
