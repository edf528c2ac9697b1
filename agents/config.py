"""What a training run depends on (:class:`TrainConfig`, saved as ``run_config.json``) and the
checks that refuse a bad one before anything is built.

>>> TrainConfig(env="PointReach-v0", reward="sparse").algo
'ppo'
"""

from __future__ import annotations

import math
import pathlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from stable_baselines3 import PPO, SAC

import envs
from agents import correction
from envs.spaces import RenderSize, render_size_value
from agents.preflight import pbrs_path
from reward_wrappers.cores.rewards import validate_gamma
from trainers.kinds import reward_kind, reward_kinds

ALGOS = {"ppo": PPO, "sac": SAC}
OBS_CHOICES = ("state", "rgb", "state+rgb")
#: ``--ignore-terminations`` / ``--normalize-obs`` choice -> TrainConfig value (None: decided per env)
AUTO_YES_NO: dict[str, bool | None] = {"auto": None, "yes": True, "no": False}
#: envs.make arguments a run sets itself; --env-kwargs may not override them.
RESERVED_ENV_KWARGS = frozenset({"obs", "reward", "render_size", "seed", "max_episode_steps", "ignore_terminations"})


def resolve_ignore_terminations(env_id: str, ignore_terminations: bool | None) -> bool:
    """``TrainConfig.ignore_terminations`` as runs use it: None (auto) means full-length episodes
    wherever the env allows it (built-in and ManiSkill envs), for every reward."""
    return envs.supports_ignore_terminations(env_id) if ignore_terminations is None else ignore_terminations


def check_discount(gamma: float, name: str) -> float:
    """``gamma`` if it is a discount factor (the wrappers' own rule, ``core.validate_gamma``);
    else a ValueError naming the option ``name``.

    >>> check_discount(0.95, "--gamma")
    0.95
    """
    try:
        return validate_gamma(gamma)
    except ValueError:
        raise ValueError(f"{name} must be in (0, 1], got {gamma}") from None


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``run_config.json``."""

    env: str = "PointReach-v0"
    algo: str = "ppo"
    reward: str = "env"
    pbrs: str | None = None
    gamma: float | None = None
    policy_obs: str = "state"
    steps: int = 50_000
    seed: int = 0
    n_envs: int = 8
    logdir: str = "runs/agent"
    collect: str | None = None
    ignore_terminations: bool | None = None
    reward_output: str | None = None
    eval_freq: int = 5_000
    eval_episodes: int = 20
    render_size: RenderSize = 64
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    normalize_obs: bool | None = None
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    verbose: int = 0
    monitor: bool = True
    monitor_min_precision: float = 0.9
    reward_at: str = "step"
    refit_every: int | None = None
    label_budget: int = 0
    refit_epochs: int = 3
    refit_precision: float = 0.95
    refit_data: str | None = None
    labeller: str = "env"
    agent_frames: str = "unlabelled"
    label_host: str = "127.0.0.1"
    label_port: int = 0
    label_render: bool = False
    demos: str | None = None
    demo_ratio: float = 0.5
    backbone: str | None = None
    batched_device: str | None = None
    process_goal: str | None = None
    pbrs_scale: float = 1.0
    pbrs_offset: float = 0.0
    process_override: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    checkpoint_every: int | None = 20_000
    resume: bool = False

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"--algo must be one of {sorted(ALGOS)}, got {self.algo!r}")
        envs.check_env_id(self.env)  # here, not in eight worker processes
        reserved = sorted(set(self.env_kwargs) & RESERVED_ENV_KWARGS)
        if reserved:
            raise ValueError(f"--env-kwargs sets {reserved}, which have options of their own "
                             "(--policy-obs, --reward, --render-size, --seed, --max-episode-steps, --ignore-terminations)")
        if self.max_episode_steps is not None and self.max_episode_steps <= 0:
            raise ValueError(f"--max-episode-steps must be positive, got {self.max_episode_steps}")
        try:
            self.render_size = render_size_value(self.render_size)  # JSON-friendly: an int, or [height, width]
        except ValueError as exc:
            raise ValueError(f"--render-size: {exc}") from None
        kind, _ = parse_reward(self.reward)
        if kind not in ("env", "sparse"):
            path = self.reward.split(":", 1)[1]
            if not pathlib.Path(path).is_file():
                raise FileNotFoundError(f"--reward {self.reward}: checkpoint {path} does not exist")
        if pbrs_path(self.pbrs) is not None and not pathlib.Path(self.pbrs).is_file():
            raise FileNotFoundError(f"--pbrs: checkpoint {self.pbrs} does not exist")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ValueError(f"--checkpoint-every must be positive (or 0 on the command line: off), got {self.checkpoint_every}")
        if self.resume and self.checkpoint_every is None:
            raise ValueError("--resume continues from checkpoints: give --checkpoint-every N too")
        if self.init_from is not None and not pathlib.Path(self.init_from).exists():
            raise FileNotFoundError(f"--init-from {self.init_from}: no such run directory or model.zip")
        if self.policy_obs not in OBS_CHOICES:
            raise ValueError(f"--policy-obs must be one of {OBS_CHOICES}, got {self.policy_obs!r}")
        if not self.pbrs_scale > 0:
            raise ValueError(f"--pbrs-scale must be positive, got {self.pbrs_scale}")
        if not math.isfinite(self.pbrs_offset):
            raise ValueError(f"--pbrs-offset must be a finite number, got {self.pbrs_offset}")
        if self.pbrs is None and (self.pbrs_scale, self.pbrs_offset) != (1.0, 0.0):
            raise ValueError("--pbrs-scale and --pbrs-offset shape a potential: give one with --pbrs")
        if self.steps <= 0 or self.n_envs <= 0:
            raise ValueError(f"--steps and --n-envs must be positive (got {self.steps}, {self.n_envs})")
        if self.gamma is not None:
            check_discount(self.gamma, "--gamma")
        if self.eval_freq <= 0 or self.eval_episodes <= 0:
            raise ValueError(f"--eval-freq and --eval-episodes must be positive (got {self.eval_freq}, {self.eval_episodes})")
        if self.batched_device is not None:
            if self.collect is not None:
                raise ValueError("--collect records through per-env wrappers; it cannot be used with --batched-device")
            if torch.device(self.batched_device).type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"--batched-device {self.batched_device}: CUDA is not available here (a CPU-only torch, or no GPU)")
        if self.ignore_terminations and not envs.supports_ignore_terminations(self.env):
            raise ValueError(f"--ignore-terminations is available for built-in and ManiSkill envs only, not {self.env!r}")
        correction.check_settings(self, kind)
        ends_on_success = not resolve_ignore_terminations(self.env, self.ignore_terminations)
        if kind == "progress" and (self.reward_output or "progress") == "progress" and ends_on_success:
            warnings.warn(
                f"--reward {self.reward} pays the progress itself every step while episodes of {self.env} end on "
                "success: hovering just short of the goal earns ~0.9 per step (~0.9/(1-gamma) in all), more than "
                "finishing, which ends the episode. Prefer --pbrs with the progress model, --reward-output delta, "
                "or --ignore-terminations yes (reward-semantics notes)", RuntimeWarning, stacklevel=3)


def parse_reward(reward: str) -> tuple[str, str | None]:
    """``"classifier:model.pt"`` -> ``("classifier", "model.pt")``; ``"env"`` -> ``("env", None)``."""
    kind, _, path = reward.partition(":")
    if kind in ("env", "sparse") and not path:
        return kind, None
    if path and kind not in ("env", "sparse"):
        reward_kind(kind)  # a ValueError naming the registered kinds if it is none of them
        return kind, path
    raise ValueError(
        f"--reward {reward!r} not understood: use env, sparse, or KIND:PATH with KIND one of {sorted(reward_kinds())}"
    )


#: settings that do not change what a run trains: where it writes, how much it prints, where its
#: labelling page listens, how often it checkpoints, whether it resumes
UNTRAINED_SETTINGS = ("logdir", "verbose", "label_host", "label_port", "checkpoint_every", "resume")


def settings_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``"name: saved -> now"`` for each training setting in which ``saved`` (a config as a run
    wrote it) differs from ``cfg``. A setting the saved config lacks, added to ``TrainConfig``
    later, ran at its default; ``ignore_terminations`` is compared as resolved (None means the
    env's default, so a ``train-agent`` run matches a ``bench`` one).

    >>> settings_differences({"env": "PointReach-v0", "steps": 100}, TrainConfig(steps=200, logdir="elsewhere"))
    ['steps: 100 -> 200']
    """
    import json
    from dataclasses import asdict

    wanted = json.loads(json.dumps(asdict(cfg), default=str))  # tuples become lists, as saved
    defaults = json.loads(json.dumps(asdict(TrainConfig()), default=str))

    def settings(config: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in {**defaults, **config}.items() if k not in UNTRAINED_SETTINGS}
        if "env" in out:
            out["ignore_terminations"] = resolve_ignore_terminations(out["env"], out.get("ignore_terminations"))
        return out

    before, now = settings(saved), settings(wanted)
    return [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(before.keys() | now.keys())
            if before.get(k) != now.get(k)]
