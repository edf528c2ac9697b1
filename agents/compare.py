"""Compare reward conditions on one env and one budget: several seeds, mean and spread.

A *condition* is a reward for ``train-agent``, optionally with PBRS: ``sparse``, ``env``,
``classifier:c.pt``, ``progress:p.pt``, ``preference:b.pt``, or any of them followed by
``+pbrs:p.pt``, and optionally by ``@name=value`` options of ``train-agent``: ``@gamma=G`` (that
condition's agent discount, and so its PBRS gamma), ``@refit-every=N``, ``@label-budget=L``,
``@refit-epochs=E``, ``@refit-data=DIR``, ``@demos=DIR``, ``@demo-ratio=R``, ``@pbrs-scale=K``, ``@pbrs-offset=C``,
``@process-goal=SOURCE``, ``@process-override=JSON``, ``@init-from=RUN_DIR`` (``{seed}`` in it
becomes each run's seed). Each (condition, seed) is
one ``train_agent`` run in its own process (or Ray task: :mod:`agents.ray_engine`); the results are summarised in ``results.json``,
``report.md`` and ``curves.png``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from agents.monitor import precision_since
from agents.ray_engine import RayGrid, run_grid_on_ray
from agents.checkpoint import with_resume
from agents.config import settings_differences
from agents.run_pool import run_pool
from agents.train import TrainConfig, check_discount, package_versions, train_agent


#: ``@name=value`` options a condition may carry: the ``train-agent`` option of that name
#: (without ``--``) -> (TrainConfig field, type).
CONDITION_OPTIONS: dict[str, tuple[str, type]] = {
    "gamma": ("gamma", float),
    "refit-every": ("refit_every", int),
    "label-budget": ("label_budget", int),
    "refit-epochs": ("refit_epochs", int),
    "refit-precision": ("refit_precision", float),
    "refit-data": ("refit_data", str),
    "labeller": ("labeller", str),
    "agent-frames": ("agent_frames", str),
    "demos": ("demos", str),
    "demo-ratio": ("demo_ratio", float),
    "pbrs-scale": ("pbrs_scale", float),
    "pbrs-offset": ("pbrs_offset", float),
    "process-goal": ("process_goal", str),
    "process-override": ("process_override", json.loads),
    "init-from": ("init_from", str),
    "reward-at": ("reward_at", str),
}


@dataclass(frozen=True)
class Condition:
    name: str
    reward: str
    pbrs: str | None = None
    gamma: float | None = None  # None: the run's (``--gamma`` or the per-env default)
    #: further TrainConfig settings of this condition, as (field, value) pairs
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> "Condition":
        """``REWARD[+pbrs:PATH][@name=value]...``, each ``@name=value`` a ``train-agent`` option.

        >>> Condition.parse("env@gamma=0.9")
        Condition(name='env@0.9', reward='env', pbrs=None, gamma=0.9, options=())
        >>> c = Condition.parse("classifier:c.pt@refit-every=5000@label-budget=2000@demos=buf")
        >>> c.name, c.options
        ('classifier+refit+demos', (('refit_every', 5000), ('label_budget', 2000), ('demos', 'buf')))
        """
        spec = text
        text, *parts = re.split(r"@(?=[a-z-]+=)", spec)
        if "@" in text and re.search(r"@\w", text):
            raise ValueError(f"condition {spec!r}: after '@' expected name=value with name one of {sorted(CONDITION_OPTIONS)}")
        gamma, options = None, []
        for part in parts:
            key, _, value = part.partition("=")
            if key not in CONDITION_OPTIONS:
                raise ValueError(f"condition {spec!r}: unknown option @{key}=; expected one of {sorted(CONDITION_OPTIONS)}")
            field_name, kind = CONDITION_OPTIONS[key]
            try:
                parsed = kind(value)
            except ValueError:
                expected = {int: "an integer", float: "a number", str: "a value"}.get(kind, "a JSON object")
                raise ValueError(f"condition {spec!r}: @{key}= expects {expected}, "
                                 f"got {value!r}") from None
            if key == "gamma":
                gamma = check_discount(parsed, f"condition {spec!r}: gamma")
            else:
                options.append((field_name, parsed))
        reward, _, pbrs = text.partition("+pbrs:")
        if not pbrs and re.search(r"\+\w+:", text):  # a '+' inside a path is fine; '+other:' is not
            raise ValueError(f"condition {text!r}: after '+' expected pbrs:PATH")
        pbrs = pbrs or None
        return cls(name or _short_name(reward, pbrs, gamma, dict(options)), reward, pbrs, gamma, tuple(options))


def seeded_options(options: tuple[tuple[str, Any], ...], seed: int) -> dict[str, Any]:
    """A condition's options for one seed: ``{seed}`` in ``@init-from=`` becomes the seed, so each
    run continues the pre-trained run of its own seed.

    >>> seeded_options((("init_from", "dense/runs/env_seed{seed}"), ("label_budget", 100)), 1)
    {'init_from': 'dense/runs/env_seed1', 'label_budget': 100}
    """
    return {k: v.replace("{seed}", str(seed)) if k == "init_from" else v for k, v in options}


def _short_name(reward: str, pbrs: str | None, gamma: float | None, options: dict[str, Any]) -> str:
    base = reward.split(":", 1)[0]
    extras = ("+refit" if options.get("refit_every") else "") + ("+demos" if options.get("demos") else "")
    return base + ("+pbrs" if pbrs else "") + extras + ("" if gamma is None else f"@{gamma:g}")


def _run_one(cfg: TrainConfig, step_seconds: float | None = None) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    return train_agent(cfg, step_seconds=step_seconds)


def finished_run(cfg: TrainConfig) -> dict[str, Any] | None:
    """The summary of a run that already finished in ``cfg.logdir`` with these settings, else None.

    Settings are compared as ``run_config.json`` saved them (:func:`agents.config.settings_differences`);
    ``eval.json`` and ``run_config.json`` are written last, so a run that was cut off has neither.
    """
    run_dir = pathlib.Path(cfg.logdir)
    try:
        saved = json.loads((run_dir / "run_config.json").read_text())["config"]
        summary = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if summary.get("stopped_by_signal"):
        return None  # stopped early: resumed from its checkpoint, or trained again
    return summary if isinstance(saved, dict) and not settings_differences(saved, cfg) else None


def run_conditions(
    conditions: Sequence[Condition],
    base: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    jobs: int = 1,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    preamble: str = "",
    resume: bool = False,
    step_seconds: float | None = None,
    ray: RayGrid | None = None,
) -> dict[str, Any]:
    """Train every condition for every seed (``jobs`` processes at once, or as Ray tasks with
    ``ray``; ``jobs`` is then unused, the cluster's CPUs decide); write a report.

    ``step_seconds``: the env's step cost, measured once by the caller (``preflight.probe_env``),
    so every run makes the same choice of worker processes instead of measuring under the load
    of the runs beside it.

    ``extra`` entries are added to ``results.json``; ``preamble`` opens ``report.md``. With
    ``resume``, runs that already finished under ``out_dir`` with the same settings
    (:func:`finished_run`) are reused instead of retrained, so an interrupted comparison continues
    where it stopped.
    """
    out_dir = pathlib.Path(out_dir)
    configs = [
        replace(base, reward=c.reward, pbrs=c.pbrs, seed=s, gamma=base.gamma if c.gamma is None else c.gamma,
                logdir=str(out_dir / "runs" / f"{c.name}_seed{s}"), **seeded_options(c.options, s))
        for c in conditions
        for s in seeds
    ]
    keys = [(c.name, s) for c in conditions for s in seeds]
    configs = label_pages(configs, base, ray is not None, progress)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    if resume:
        for key, cfg in zip(keys, configs):
            if (summary := finished_run(cfg)) is not None:
                results[key] = summary
        if results and progress:
            print(f"reusing {len(results)} finished run(s) from {out_dir / 'runs'}")
        configs = [cfg for key, cfg in zip(keys, configs) if key not in results]
        keys = [key for key in keys if key not in results]
        # a run cut off after a checkpoint continues from it; one with other settings trains afresh
        configs = [with_resume(cfg) for cfg in configs]
        if progress and any(cfg.resume for cfg in configs):
            print(f"resuming {sum(cfg.resume for cfg in configs)} unfinished run(s) from their checkpoints")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(configs), desc="training runs", unit="run", disable=None if progress else True)  # None: off when not a tty
    if ray is not None:
        results.update(run_grid_on_ray(ray, keys, configs, out_dir, step_seconds, on_done=lambda key: bar.update(1)))
    elif jobs <= 1:
        for key, cfg in zip(keys, configs):
            bar.set_postfix_str(f"{key[0]} seed {key[1]}")
            results[key] = _run_one(cfg, step_seconds)
            bar.update(1)
    else:  # one process per run: a run whose process dies is named and started again (agents/run_pool.py)
        results.update(run_pool(list(zip(keys, configs)), jobs, _run_one, step_seconds, on_done=lambda key: bar.update(1)))
    bar.close()
    summary = {**summarise(conditions, seeds, results, base), **(extra or {})}
    write_report(summary, out_dir, preamble)
    return summary


def label_pages(configs: list[TrainConfig], base: TrainConfig, on_ray: bool, report: bool) -> list[TrainConfig]:
    """One labelling page per run that labels with ``web``: ports ``--label-port``, +1, +2... (listed
    here), or any free port each (0: each run prints its URL and writes ``labelling_page.json``)."""
    web = [i for i, cfg in enumerate(configs) if cfg.labeller == "web" and cfg.refit_every is not None]
    if not web:
        return configs
    if on_ray:
        raise ValueError("@labeller=web needs a person at a page on this machine; Ray runs are elsewhere: "
                         "use the local engine, or @labeller=module:callable")
    configs = list(configs)
    for n, i in enumerate(web):
        port = base.label_port + n if base.label_port else 0
        configs[i] = replace(configs[i], label_host=base.label_host, label_port=port)
        if report:
            where = f"http://{base.label_host}:{port}/" if port else f"{configs[i].logdir}/labelling_page.json"
            print(f"labelling page of {pathlib.Path(configs[i].logdir).name}: {where}")
    return configs


def summarise(conditions: Sequence[Condition], seeds: Sequence[int], results: dict, base: TrainConfig) -> dict[str, Any]:
    rows = []
    for c in conditions:
        runs = [results[(c.name, s)] for s in seeds]
        finals = np.array([r["final_true_success"] for r in runs])
        reached = [r["steps_to_80"] for r in runs if r["steps_to_80"] is not None]
        rows.append({
            "condition": c.name,
            "reward": c.reward,
            "pbrs": c.pbrs,
            "gamma": runs[0]["gamma"],
            "final_true_success_mean": float(finals.mean()),
            "final_true_success_std": float(finals.std(ddof=1)) if len(finals) > 1 else 0.0,  # sample std
            "final_true_success_per_seed": finals.tolist(),
            # False where the env reports no success flag: the success figures above mean nothing there
            "reports_success": all(r["curve"][-1].get("reports_success", True) for r in runs),
            "final_env_return_mean": float(np.mean([r["curve"][-1]["env_return"] for r in runs])),
            "steps_to_80_median": float(np.median(reached)) if reached else None,
            "seeds_reaching_80": len(reached),
            "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in runs])),
            "reward_inference_share_mean": float(np.mean([r["reward_inference_share"] for r in runs])),
            "curves": [r["curve"] for r in runs],
            "labels_used_per_seed": [r.get("labels_used", 0) for r in runs],
            "labels_per_seed": [r.get("labels") for r in runs],
            "monitor_warned_per_seed": [bool((r.get("monitor") or {}).get("warned")) for r in runs],
            # precision of the learned success decision on the training frames of the last 20 % of steps
            "monitor_precision_last20_per_seed": [
                precision_since((r.get("monitor") or {}).get("history") or [], int(0.8 * base.steps)) for r in runs],
            "monitor_curves": [[{"steps": p["steps"], "precision": p["precision"], "labels_used": p["labels_used"]}
                                for p in ((r.get("monitor") or {}).get("history") or [])] for r in runs],
        })
    return {
        "env": base.env,
        "algo": base.algo,
        "steps": base.steps,
        "n_envs": base.n_envs,
        "seeds": list(seeds),
        "conditions": rows,
        "versions": package_versions(),
    }


def format_table(summary: dict[str, Any]) -> str:
    n = len(summary["seeds"])
    lines = [
        f"| condition | gamma | final true success (mean ± std, {n} seed{'s' if n > 1 else ''}) | steps to 80% (median) | "
        "monitor precision, last 20 % (per seed) | labels used, marks+queries source (per seed) | wall time (s) | reward inference share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["conditions"]:
        steps = "never" if row["steps_to_80_median"] is None else f"{row['steps_to_80_median']:.0f} ({row['seeds_reaching_80']}/{n})"
        precision = " / ".join("–" if p is None else f"{p:.2f}" for p in row.get("monitor_precision_last20_per_seed", []))
        labels = " / ".join(str(v) if not d else f"{v} ({d['trajectory_marks']}+{d['queries']}"
                            + (f" {d['source']})" if d.get("source") else ")")
                            for v, d in zip(row.get("labels_used_per_seed", []),
                                            row.get("labels_per_seed") or [None] * len(row.get("labels_used_per_seed", []))))
        success = (f"{row['final_true_success_mean']:.2f} ± {row['final_true_success_std']:.2f}"
                   if row.get("reports_success", True) else
                   f"none reported by the env (env return {row['final_env_return_mean']:.2f})")
        lines.append(
            f"| {row['condition']} | {row['gamma']:g} | {success} | {steps} | "
            f"{precision or '–'} | {labels or '–'} | "
            f"{row['wall_seconds_mean']:.1f} | {100 * row['reward_inference_share_mean']:.1f}% |"
        )
    return "\n".join(lines)


def plot_curves(summary: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (colour index, row): a condition keeps its colour in both panels
    monitored = [(k, row) for k, row in enumerate(summary["conditions"]) if any(row.get("monitor_curves", []))]
    fig, axes = plt.subplots(1, 2 if monitored else 1, figsize=(12 if monitored else 7, 4.2), squeeze=False)
    ax = axes[0, 0]
    for row in summary["conditions"]:
        steps = np.array([c["steps"] for c in row["curves"][0]])
        # Seeds evaluate at the same step counts; align on the shortest curve.
        n = min(len(c) for c in row["curves"])
        values = np.array([[p["success_rate"] for p in c[:n]] for c in row["curves"]])
        ax.plot(steps[:n], values.mean(0), label=row["condition"])
        if len(values) > 1:
            ax.fill_between(steps[:n], values.min(0), values.max(0), alpha=0.15)
    ax.set_xlabel("env steps")
    ax.set_ylabel("true success rate (deterministic eval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{summary['env']}, {summary['algo'].upper()}, {len(summary['seeds'])} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if monitored:
        plot_monitor(monitored, axes[0, 1])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_monitor(rows: Sequence[tuple[int, dict[str, Any]]], ax: Any) -> None:
    """Monitor precision (recent training frames) against steps, one line per seed; labels used in the legend."""
    for k, row in rows:
        for seed, curve in enumerate(row["monitor_curves"]):
            points = [(p["steps"], p["precision"]) for p in curve if p["precision"] is not None]
            if not points:
                continue
            labels = curve[-1]["labels_used"]
            ax.plot(*zip(*points), color=f"C{k}", alpha=0.8,
                    label=f"{row['condition']} ({labels} labels)" if seed == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("reward monitor precision (training frames)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def write_report(summary: dict[str, Any], out_dir: pathlib.Path, preamble: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(summary, out_dir / "curves.png")
    table = format_table(summary)
    (out_dir / "report.md").write_text(
        f"# Reward comparison on {summary['env']}\n\n{preamble}"
        f"{summary['algo'].upper()}, {summary['steps']} env steps per run, {summary['n_envs']} envs, seeds {summary['seeds']}. "
        "True success is measured by deterministic evaluation on the env's own success flag, whatever reward the agent was trained on.\n\n"
        f"{table}\n\n![curves](curves.png)\n\nVersions: `{json.dumps(summary['versions'])}`\n"
    )
