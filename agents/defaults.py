"""Training defaults per env family (``envs.env_family``): hyperparameters, worker processes,
observation normalisation, each with the reason a run records in ``run_config.json``.

* ``builtin`` (PointReach, PointKeyDoor): small networks that train in minutes on 2 cores; the
  envs step in microseconds, so one process; observations are already in [-1, 1]. PointKeyDoor's
  PPO rollouts are longer than its episodes.
* ``maniskill``: the settings measured on PushCube (platform notes, ``benchmarks/results``); one
  CPU simulator per worker process; running mean/std of the state, whose entries mix joint angles,
  velocities and positions of very different scales.
* ``gymnasium`` (any other registered id): SB3's own defaults; worker processes only when one
  step costs at least :data:`SUBPROCESS_MIN_STEP_SECONDS` (measured once, in the main process);
  no normalisation unless asked for.

In every family SAC updates once per env step (:func:`sac_updates`), whatever ``--n-envs``.

>>> settings = family_defaults("ppo", "CartPole-v1", step_seconds=1e-5)
>>> settings.family, settings.hyperparameters, settings.subprocess, settings.normalize_obs
('gymnasium', {}, False, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import envs

#: SAC's default gradient steps per vector step are ``n_envs`` (one update per env step, SB3's and
#: rl-zoo3's ratio on one env) up to this cap: the torch-batched path steps thousands of envs at
#: once, and 4096 updates per vector step would leave the GPU's envs idle.
SAC_MAX_GRADIENT_STEPS = 64

#: A step at least this slow pays for a worker process (SB3's SubprocVecEnv costs roughly a
#: tenth of a millisecond per env step in pipes and pickling).
SUBPROCESS_MIN_STEP_SECONDS = 1e-3


@dataclass
class FamilyDefaults:
    """What a run uses unless told otherwise, and why (``reasons``, for ``run_config.json``)."""

    family: str
    hyperparameters: dict[str, Any]
    subprocess: bool
    normalize_obs: bool
    reasons: dict[str, str] = field(default_factory=dict)


def default_hyperparameters(algo: str, env_id: str) -> dict[str, Any]:
    """SB3 hyperparameters for ``algo`` on ``env_id``'s family (JSON-able; see
    :func:`sb3_hyperparameters`).

    >>> default_hyperparameters("ppo", "CartPole-v1")
    {}
    """
    family = envs.env_family(env_id)
    if family == "gymnasium":
        return {}  # SB3's own, tuned for the classic-control and MuJoCo benchmarks
    if algo == "ppo":
        if family == "maniskill":
            # Annealed learning rate: at a constant rate PushCube's success peaked and then fell back.
            # Initial action std 0.2 (log -1.6), not SB3's 1: a unit of envs.make's default
            # pd_ee_delta_pos action moves the gripper 10 cm, and PushCube pays for pushing only
            # with the gripper within 1 cm of the cube's back. At std 1 (and 0.6) the dense reward's
            # success swung between 0.2 and 0.8 over 200k steps; at 0.2 it ends 160k steps at
            # 0.58-0.90 (4 runs, 3 seeds; benchmarks/results/README.md).
            # gamma 0.95, not ManiSkill's 0.8 (tuned for thousands of GPU envs that end episodes on
            # success): with 8 envs and full-length episodes, PushCube's dense reward ended 300k steps
            # at 0.98 / 0.96 (seeds 0 / 1) against 0.56 at 0.8, and PBRS on a learned progress
            # model learns only with the longer horizon (0.88 / 0.00).
            return dict(n_steps=64, batch_size=512, n_epochs=8, gamma=0.95, gae_lambda=0.9, learning_rate=3e-4,
                        lr_schedule="linear", ent_coef=0.0, clip_range=0.2, target_kl=0.1,
                        policy_kwargs=dict(net_arch=[256, 256, 256], log_std_init=-1.6))
        hyper = dict(n_steps=64, batch_size=256, n_epochs=5, gamma=0.95, gae_lambda=0.95, learning_rate=1e-3,
                     ent_coef=0.0, policy_kwargs=dict(net_arch=[64, 64]))
        if env_id == "PointKeyDoor-v0":
            # Rollouts of 256 steps per env, longer than its 100-step episodes, so an update sees
            # whole episodes and the late success in them (and 10 epochs). At gamma 0.99, 3 seeds,
            # 400k steps: the dense reward reached 80 % by 200k on 3/3 seeds (400k median before),
            # PBRS on the env's own potential (scale 5) by 200k on 3/3 (2/3 by 400k before)
            # (benchmarks/results/process_reward/ppo_keydoor_rollout256/).
            hyper.update(n_steps=256, n_epochs=10)
        return hyper
    # A bounded replay buffer: SB3's default (1M) would need ~12 GB for 64x64 images.
    # gamma 0.95 for ManiSkill too, as for PPO: on PushCube's dense reward (8 envs, full-length
    # episodes, 100k steps) SAC ended at 1.00 / 0.65 (seeds 0 / 1) against 0.30 / 0.55 at
    # ManiSkill's 0.8, and had first successes by 40k steps against 80k
    # (benchmarks/results/pushcube_sac_gamma/).
    # (gradient_steps: family_defaults, from the number of envs)
    return dict(learning_starts=1_000, batch_size=256, buffer_size=100_000, gamma=0.95,
                train_freq=1, policy_kwargs=dict(net_arch=[256, 256]))


def sac_updates(n_envs: int) -> tuple[dict[str, Any], str]:
    """SAC's default update schedule for ``n_envs`` envs, and the reason a run records.

    SB3 trains ``gradient_steps`` times per vector step of ``n_envs`` transitions; its default of
    1 gives 8 envs one update per 8 env steps. One update per env step took dense SAC on PushCube
    from 0.18 to 0.81 true success (benchmarks/results/pushcube_pixels/).

    >>> sac_updates(8)[0]
    {'train_freq': 1, 'gradient_steps': 8}
    >>> sac_updates(1024)[0]["gradient_steps"]
    64
    """
    steps = min(n_envs, SAC_MAX_GRADIENT_STEPS)
    ratio = "one update per env step" if steps == n_envs else \
        f"{steps} updates per {n_envs} env steps (capped at SAC_MAX_GRADIENT_STEPS for many envs)"
    return {"train_freq": 1, "gradient_steps": steps}, f"SAC: {steps} gradient steps per vector step of {n_envs} envs: {ratio}"


def family_defaults(algo: str, env_id: str, *, step_seconds: float | None = None, n_envs: int = 1) -> FamilyDefaults:
    """The defaults of ``env_id``'s family for ``n_envs`` envs; ``step_seconds``
    (``envs.step_seconds``) decides worker processes for the ``gymnasium`` family (one process
    when it is not measured)."""
    family = envs.env_family(env_id)
    hyper = default_hyperparameters(algo, env_id)
    updates = {}
    if algo == "sac":  # every family: the update-to-data ratio must not fall with the number of envs
        schedule, reason = sac_updates(n_envs)
        hyper.update(schedule)
        updates = {"updates": reason}
    if family == "builtin":
        return FamilyDefaults(family, hyper, subprocess=False, normalize_obs=False, reasons={
            "hyperparameters": "built-in envs: small networks that train in minutes on 2 cores",
            "workers": "one process: built-in envs step in microseconds",
            "normalize_obs": "no: built-in observations are already in [-1, 1]", **updates})
    if family == "maniskill":
        return FamilyDefaults(family, hyper, subprocess=True, normalize_obs=True, reasons={
            "hyperparameters": "ManiSkill: settings measured on PushCube (benchmarks/results/README.md)",
            "workers": "one process per env: each runs its own CPU simulator",
            "normalize_obs": "yes: ManiSkill states mix angles, velocities and positions of different scales", **updates})
    slow = step_seconds is not None and step_seconds >= SUBPROCESS_MIN_STEP_SECONDS
    measured = "not measured" if step_seconds is None else f"{1e3 * step_seconds:.2f} ms per step"
    return FamilyDefaults(family, hyper, subprocess=slow, normalize_obs=False, reasons={
        "hyperparameters": "a gymnasium env: SB3's own defaults" + (" (SAC's updates per step aside)" if updates else ""),
        "workers": (f"one process per env: {measured} >= {1e3 * SUBPROCESS_MIN_STEP_SECONDS:g} ms" if slow
                    else f"one process: {measured}, too cheap for worker processes to pay"),
        "normalize_obs": "no: SB3's default (pass --normalize-obs yes for unscaled observations)", **updates})


def sb3_hyperparameters(hyper: dict[str, Any]) -> dict[str, Any]:
    """SB3 keyword arguments from our JSON-able hyperparameters.

    ``lr_schedule="linear"`` anneals ``learning_rate`` to 0 over the run (SB3 takes a function of
    the remaining progress; the run config keeps the readable form).

    >>> kwargs = sb3_hyperparameters({"learning_rate": 3e-4, "lr_schedule": "linear"})
    >>> kwargs["learning_rate"](0.5)
    0.00015
    """
    kwargs = dict(hyper)
    schedule = kwargs.pop("lr_schedule", "constant")
    if schedule == "linear":
        initial = float(kwargs.get("learning_rate", 3e-4))
        kwargs["learning_rate"] = lambda progress_remaining: progress_remaining * initial
    elif schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant' or 'linear', got {schedule!r}")
    return kwargs


def parse_algo_kwargs(text: str) -> dict[str, Any]:
    """``--algo-kwargs`` JSON -> dict of SB3 hyperparameters (a clear error for anything else).

    >>> parse_algo_kwargs('{"n_epochs": 4, "gae_lambda": 0.95}')
    {'n_epochs': 4, 'gae_lambda': 0.95}
    """
    return envs.parse_json_object(text, "--algo-kwargs", example='{"n_epochs": 4}')


__all__ = ["FamilyDefaults", "SAC_MAX_GRADIENT_STEPS", "SUBPROCESS_MIN_STEP_SECONDS", "default_hyperparameters",
           "family_defaults", "parse_algo_kwargs", "sac_updates", "sb3_hyperparameters"]
