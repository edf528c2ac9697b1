"""Wiring of the reward monitor, in-training refits, replay relabelling and demonstrations into a run.

``train-agent`` calls these in order: :func:`check_settings` (with its config), :func:`frame_store` (under the reward wrappers), then, with
the stack built, :func:`replay_kwargs` (SAC only) and :func:`callbacks`. Each piece lives in its
own module: :mod:`agents.monitor`, :mod:`agents.refit`, :mod:`agents.replay`,
:mod:`reward_wrappers.transitions`.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

import envs

from agents.labelling.accounting import LabelAccount, buffer_ids
from agents.labelling.queue import LabelQueue
from agents.labelling.server import LabelServer, QueryPage
from agents.labelling.sources import parse_labeller
from agents.monitor import RewardMonitor
from agents.refit import RefitCallback
from collectors.atomic import write_json_atomic
from agents.replay import load_demonstrations, replay_buffer_class
from reward_wrappers.cores.rewards import REWARD_AT
from trainers.kinds import reward_kind
from reward_wrappers.models.base import RewardModel, SwappableModel
from reward_wrappers.transitions import (
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
        if cfg.refit_every <= 0 or cfg.label_budget < 0:
            raise ValueError(f"--refit-every must be positive and --label-budget at least 0 (got {cfg.refit_every}, "
                             f"{cfg.label_budget})")
        if cfg.agent_frames not in ("unlabelled", "off"):
            raise ValueError(f"--agent-frames must be unlabelled or off, got {cfg.agent_frames!r}")
        if cfg.label_budget == 0 and cfg.agent_frames == "off":
            raise ValueError("--label-budget 0 with --agent-frames off leaves the refits nothing to learn from")
        if not 0.0 < cfg.refit_precision <= 1.0:
            raise ValueError(f"--refit-precision must be in (0, 1], got {cfg.refit_precision}")
        if cfg.refit_epochs <= 0:
            raise ValueError(f"--refit-epochs must be positive, got {cfg.refit_epochs}")
        if cfg.refit_data is not None and not pathlib.Path(cfg.refit_data).is_dir():
            raise FileNotFoundError(f"--refit-data: buffer directory {cfg.refit_data} does not exist")
        parse_labeller(cfg.labeller)  # an unknown source or callable is named before any run
        if cfg.labeller == "web" and not 0 <= cfg.label_port <= 65535:
            raise ValueError(f"--label-port must be in 0..65535, got {cfg.label_port}")
    elif cfg.label_budget:
        raise ValueError("--label-budget is spent by refits: give --refit-every N too")
    elif cfg.labeller != "env":
        raise ValueError(f"--labeller {cfg.labeller} answers the refits' questions: give --refit-every N too")
    if cfg.demos is not None:
        if cfg.algo != "sac":
            raise ValueError("--demos puts demonstrations in SAC's replay buffer: use --algo sac")
        if kind == "sparse":
            raise ValueError("--demos takes the demonstrations' rewards from the reward model or, with --reward env, from "
                             "a recording of the same env reward; --reward sparse has neither: use a learned reward or env")
        if not pathlib.Path(cfg.demos).is_dir():
            raise FileNotFoundError(f"--demos: buffer directory {cfg.demos} does not exist")
    if not 0.0 <= cfg.demo_ratio < 1.0:
        raise ValueError(f"--demo-ratio must be in [0, 1), got {cfg.demo_ratio}")
    check_reward_at(cfg, kind)
    if not 0.0 < cfg.monitor_min_precision <= 1.0:
        raise ValueError(f"--monitor-min-precision must be in (0, 1], got {cfg.monitor_min_precision}")


def check_reward_at(cfg: Any, kind: str) -> None:
    """``--reward-at episode-end``: a learned reward paid once per full-length episode, on its final frame."""
    if cfg.reward_at not in REWARD_AT:
        raise ValueError(f"--reward-at must be one of {REWARD_AT}, got {cfg.reward_at!r}")
    if cfg.reward_at == "step":
        return
    if kind in ("env", "sparse"):
        raise ValueError(f"--reward-at episode-end pays a learned reward once per episode; --reward {cfg.reward} has none")
    if "reward_at" not in getattr(reward_kind(kind).wrapper, "option_names", ()):
        raise ValueError(f"--reward-at episode-end: the {kind} kind's wrapper pays every step (it has no reward_at option)")
    if cfg.pbrs is not None:
        raise ValueError("--pbrs with --reward-at episode-end: PBRS pays gamma * Phi(s') - Phi(s) on every step, and "
                         "the images the models read are rendered at each episode's end only: drop one of them")
    if cfg.batched_device is not None:
        raise ValueError("--reward-at episode-end is built for --n-envs worker envs, not --batched-device")
    if cfg.ignore_terminations is False or not envs.supports_ignore_terminations(cfg.env):
        # A k-frame model with a rolling render of its last k frames would lift this; it is not built.
        raise ValueError(f"--reward-at episode-end needs full-length episodes (--ignore-terminations yes: built-in and "
                         f"ManiSkill envs); {cfg.env} with --ignore-terminations "
                         f"{ {None: 'auto', True: 'yes', False: 'no'}[cfg.ignore_terminations]} may end an episode early")


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
    keys = model_input_keys(models)
    # A person needs to see something: with --label-render the env's rendered frame rides along.
    display = ("rgb",) if getattr(cfg, "label_render", False) and "rgb" not in keys else ()
    # Paid at episode end, the reward reads final frames only: the labeller is asked about those.
    frames = VecTransitionFrames(venv, keys, recent=cfg.refit_every or 0, max_recent_bytes=RECENT_FRAMES_BYTES,
                                 display_keys=display, final_only=getattr(cfg, "reward_at", "step") == "episode-end")
    return frames, frames


def replay_kwargs(cfg: Any, venv: VecEnv, frames: VecTransitionFrames) -> dict[str, Any]:
    """SAC keyword arguments for a relabelling replay buffer (demonstrations included) over ``venv``."""
    cores = reward_cores(venv)
    check_relabelable(cores)
    frames.keep_prev = needs_prev(cores)

    def reward_fn(prev, nxt, env_reward, terminated, last):  # noqa: ANN001, ANN202 - RewardFunction
        return transition_rewards(cores, prev, nxt, env_reward, terminated, last=last)

    demos = None
    if cfg.demos is not None:
        # --reward env pays the recorded rewards: the recording must state they are this env's dense reward
        env_reward = (cfg.env, cfg.env_kwargs, "dense") if cfg.reward == "env" else None
        demos = load_demonstrations(cfg.demos, venv.observation_space, venv.action_space, frames.keys, env_reward)
    return {
        "replay_buffer_class": replay_buffer_class(venv.observation_space),
        "replay_buffer_kwargs": {"frames": frames, "reward_fn": reward_fn, "demos": demos, "demo_ratio": cfg.demo_ratio},
    }


def label_account(cfg: Any, live: Optional[SwappableModel], potential: Any = None) -> LabelAccount:
    """The run's label account: the reward checkpoints' trajectory marks and the demonstrations'
    (each trajectory once); the refit adds its queue and buffers."""
    account = LabelAccount()
    if live is not None:
        account.add_checkpoint(live.current, "reward model data")
    if potential is not None and getattr(potential, "metadata", None) is not None:
        account.add_checkpoint(potential, "potential data")
    if cfg.demos is not None:
        account.add_marks(buffer_ids(cfg.demos), "demonstrations")
    return account


def callbacks(cfg: Any, frames: Optional[VecTransitionFrames], live: Optional[SwappableModel], run_dir: pathlib.Path,
              has_reward_model: bool, account: LabelAccount, verbose: int = 1
              ) -> tuple[list[BaseCallback], Optional[RewardMonitor], Optional[RefitCallback], Optional[LabelServer]]:
    """The monitor (on whenever a reward model pays the agent and ``cfg.monitor``), the refit and,
    with ``--labeller web``, the labelling page (close it when the run ends)."""
    refit = server = None
    queue = None
    if cfg.refit_every is not None:
        source = parse_labeller(cfg.labeller)
        queue = LabelQueue(run_dir / "labels", cfg.label_budget, source.name)
        account.queue = queue
        if queue.reused and verbose:
            print(f"reusing {queue.reused} answers from {run_dir / 'labels'} (not charged again; "
                  f"{queue.remaining} of the budget left)", file=sys.stderr)
    monitor = None
    if cfg.monitor and has_reward_model:
        monitor = RewardMonitor(min_precision=cfg.monitor_min_precision, log_every=max(cfg.n_envs, cfg.eval_freq // 4),
                                report_path=run_dir / "reward_monitor.json", label_counter=account,
                                label_queue=queue, verbose=verbose)
    if queue is not None:
        base = cfg.refit_data or live.current.metadata.get("data")
        if not base or not pathlib.Path(base).is_dir():
            raise ValueError(f"--refit-every: the classifier's original buffers ({base!r} in its checkpoint) are not a "
                             "directory here; give --refit-data DIR")
        refit = RefitCallback(model=live, frames=frames, queue=queue, source=source, base_data=base,
                              every=cfg.refit_every,
                              run_dir=run_dir, epochs=cfg.refit_epochs, seed=cfg.seed, monitor=monitor,
                              precision=cfg.refit_precision, account=account,
                              unlabelled=cfg.agent_frames == "unlabelled", verbose=verbose)
        if source.live:
            server = LabelServer(QueryPage(queue, lambda: page_status(refit, monitor), f"RewardSwap: {cfg.env}, "
                                           f"{cfg.algo.upper()} on {cfg.reward}"), cfg.label_host, cfg.label_port)
            write_json_atomic(run_dir / "labelling_page.json", {"url": server.url})
            print(f"labelling page: {server.url}  (answers are used by the next refit; the run does not wait)",
                  flush=True)
    return [c for c in (monitor, refit) if c is not None], monitor, refit, server


def page_status(refit: RefitCallback, monitor: Optional[RewardMonitor]) -> dict[str, Any]:
    """What the labelling page shows beside the queries: the last refit and the monitor's figures."""
    last = refit.records[-1] if refit.records else None
    figures: dict[str, Any] = {"steps": refit.num_timesteps}
    if monitor is not None:
        figures.update(monitor.page_figures())
    return {"refit": None if last is None else {k: last[k] for k in ("refit", "steps", "answers_used", "labels_used")},
            "monitor": figures}
