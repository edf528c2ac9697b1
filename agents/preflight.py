"""What a run checks in the main process before any worker starts: the env (one made here, so bad
constructor arguments fail once and a foreign env's step cost is known) and what needs the
checkpoints themselves (the env they were fitted on, the refits' buffers).
``cfg`` is an ``agents.train.TrainConfig``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import envs
from reward_wrappers import load_reward_model
from reward_wrappers.process.net import ProcessNet
from reward_wrappers.process.potential import ProcessPotential, load_potential
from reward_wrappers.models.base import RewardModel, as_reward_model, import_function, model_window


def reward_path(reward: str) -> str | None:
    """The checkpoint of a learned ``--reward`` (None for env and sparse).

    >>> reward_path("classifier:c.pt"), reward_path("env")
    ('c.pt', None)
    """
    return reward.partition(":")[2] or None


def pbrs_path(pbrs: str | None) -> str | None:
    """The checkpoint of ``--pbrs`` (None when it names a function, ``fn:MODULE:FUNCTION``).

    >>> pbrs_path("progress.pt"), pbrs_path("fn:envs.point_key_door:remaining_path_potential")
    ('progress.pt', None)
    """
    return None if pbrs is None or pbrs.startswith("fn:") else pbrs


def load_pbrs(cfg: Any) -> Any:
    """``--pbrs`` as a potential: a checkpoint (:func:`load_potential`: a process model gets its
    goal and overrides) or a function ``f(frames) -> (B,)`` of the env's observation keys."""
    if cfg.pbrs.startswith("fn:"):
        if cfg.process_goal is not None or cfg.process_override:
            raise ValueError("--process-goal and --process-override apply only to a process-reward model given as --pbrs")
        return as_reward_model(import_function(cfg.pbrs[3:], f"--pbrs {cfg.pbrs}"))
    return load_potential(cfg.pbrs, cfg.process_goal, cfg.process_override)


def recorded_env_spec(path: str) -> dict[str, Any] | None:
    """The env spec a checkpoint records (from the data it was fitted on), if any."""
    return load_reward_model(path).metadata.get("env")


def check_checkpoints(cfg: Any, models: dict[str, RewardModel] | None = None) -> None:
    """What needs the checkpoints themselves, checked before any run starts: a reward model fitted
    on data from another env (id or constructor arguments) is refused, saying what differs, and
    refits need the classifier's original buffers, and refits, relabelling and demonstrations need
    single-frame models. ``models``: option -> loaded model (else each
    checkpoint is read, once)."""
    if cfg.pbrs is not None and pbrs_path(cfg.pbrs) is None and not (models or {}).get("--pbrs"):
        load_pbrs(cfg)  # a function potential: its module and name, checked before any run (unless loaded)
    paths = {option: path for option, path in (("--reward", reward_path(cfg.reward)), ("--pbrs", pbrs_path(cfg.pbrs))) if path}
    models = {option: (models or {}).get(option) or load_reward_model(path) for option, path in paths.items()}
    process = {option for option, model in models.items() if isinstance(getattr(model, "net", model), ProcessNet)
               or isinstance(getattr(model, "model", None), ProcessPotential)}
    if "--reward" in process:
        raise ValueError(f"--reward {cfg.reward}: a process-reward model is a shaping potential; pass it as --pbrs PATH "
                         "with --process-goal (and --reward sparse or env)")
    if "--pbrs" in process:
        if not isinstance(getattr(models["--pbrs"], "model", None), ProcessPotential):  # else train_agent built it already
            load_potential(cfg.pbrs, cfg.process_goal, cfg.process_override)  # the goal and overrides, checked here
        if cfg.refit_every is not None or cfg.demos is not None:
            raise ValueError("a process-reward potential depends on each episode's history, which stored transitions "
                             "do not keep: train without --refit-every and --demos")
    elif cfg.process_goal is not None or cfg.process_override:
        raise ValueError("--process-goal and --process-override apply only to a process-reward model given as --pbrs")
    metadata = {option: getattr(model, "metadata", None) or {} for option, model in models.items()}
    wanted = envs.env_spec(cfg.env, cfg.env_kwargs, cfg.max_episode_steps, cfg.render_size)
    for option, path in paths.items():
        recorded = metadata[option].get("env")
        differences = envs.spec_differences(recorded, wanted, keys=("id", "kwargs")) if recorded else []
        if differences:
            raise ValueError(f"{option} {path} was fitted on data from another env ({'; '.join(differences)}); "
                             "pass --env / --env-kwargs as recorded, or fit the model on this env's data")
    single_frames = cfg.refit_every is not None or (cfg.algo == "sac" and cfg.demos is not None)
    for option, model in models.items():
        window = model_window(model)
        if window > 1 and option == "--reward" and getattr(cfg, "reward_at", "step") == "episode-end":
            raise ValueError(f"--reward {cfg.reward} reads {window} frames, but with --reward-at episode-end only each "
                             "episode's final frame is rendered: fit the model with --window 1")
        if window > 1 and single_frames:
            # Stored transitions, labelled frames and demonstrations keep one frame per step.
            raise ValueError(f"{option} {paths[option]} reads {window} frames, but refits, replay relabelling and "
                             "demonstrations work on single frames: fit the model with --window 1, or train "
                             "without --refit-every and --demos")
    if cfg.refit_every is not None and cfg.refit_data is None:
        base = metadata.get("--reward", {}).get("data")
        if not base or not pathlib.Path(base).is_dir():
            raise ValueError(f"--refit-every: the classifier's original buffers ({base!r} in its checkpoint) are not a "
                             "directory here; give --refit-data DIR")


def probe_env(cfg: Any) -> float | None:
    """Make one env of the run here (``envs.step_seconds``): bad constructor arguments fail once, in
    this process, and a foreign env's step cost decides whether worker processes pay for
    themselves. None (nothing made) for built-in and ManiSkill envs without ``env_kwargs``."""
    if envs.env_family(cfg.env) != "gymnasium" and not cfg.env_kwargs:
        return None
    return envs.step_seconds(cfg.env, max_episode_steps=cfg.max_episode_steps, **cfg.env_kwargs)


def check_labeller(cfg: Any) -> None:
    """Refuse ``--labeller env`` (the default) for refits on an env that reports no success flag,
    before any run: there is nothing to stand in for a person. Built-in and ManiSkill envs report one."""
    if cfg.refit_every is None or cfg.labeller != "env" or envs.env_family(cfg.env) != "gymnasium":
        return
    env = envs.make(cfg.env, obs="state", max_episode_steps=cfg.max_episode_steps, **cfg.env_kwargs)
    try:
        _, info = env.reset(seed=0)
    finally:
        env.close()
    if "success" not in info:
        raise ValueError(f"--labeller env: {cfg.env} reports no success flag, so nothing can stand in for a person; "
                         "answer the refits' questions with --labeller web (a page) or --labeller module:callable")


__all__ = ["check_checkpoints", "check_labeller", "probe_env", "recorded_env_spec", "reward_path"]
