"""Run a comparison's (condition x seed) grid as Ray tasks, for ``bench`` and ``demo --engine ray``.

A sweep that outgrows one machine's process pool goes to a Ray cluster: each run is one task
declaring one CPU (and ``--gpus-per-run`` GPUs), so Ray places as many at once as the cluster
holds. Where the workers share the driver's filesystem (found out per task through the marker of
:mod:`collectors.ray_cluster`, or ruled out by ``--no-shared-fs``) a run writes into ``--out``
directly; elsewhere it trains in a temp directory on its node and returns the directory's files,
which the driver writes into ``--out`` with ``eval.json`` and ``run_config.json`` last, the two
:func:`agents.compare.finished_run` reads, so ``--resume`` sees a returned run as finished only
once all of it is there. There the reward checkpoints (``--reward``, ``--pbrs``) travel too,
through Ray's object store, and the saved config names the driver's paths, so ``--resume``
compares like with like. Directories a condition reads (``@demos=``, ``@refit-data=``) do not
travel: such conditions need a shared filesystem.

A task whose worker process or node dies is run again (``max_retries``); an exception raised by
the run itself is not retried (``retry_exceptions=False``): a bad checkpoint fails the same way
every time, and retrying it would only hide the error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from agents.preflight import pbrs_path
from agents.train import TrainConfig, parse_reward
from collectors.atomic import write_atomic
from collectors.ray_cluster import (RayUnavailableError, add_engine_arguments, import_ray, ray_session, sees_marker,
                                    shared_fs_marker)

#: Files :func:`agents.compare.finished_run` reads; the driver writes them after everything else.
WRITTEN_LAST = ("eval.json", "run_config.json")


@dataclass(frozen=True)
class RayGrid:
    """How a grid runs on Ray: the cluster, each run's GPUs, the filesystem, the retries."""

    address: str | None = None  # None: a local cluster started for this command
    gpus_per_run: float = 0.0
    shared_fs: bool | None = None  # None: each task checks; False: always return the files
    max_retries: int = 3  # reruns of a task whose worker or node died


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address`` (shared with ``collect``), ``--gpus-per-run``, ``--no-shared-fs``."""
    add_engine_arguments(parser)
    parser.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                        help="with --engine ray: GPUs Ray reserves for each run (fractions share one GPU; Ray sets "
                             "CUDA_VISIBLE_DEVICES for the run); 0: none, the agents train on CPU")
    parser.add_argument("--no-shared-fs", action="store_true",
                        help="with --engine ray: the workers do not see --out; each run returns its files (model, "
                             "TensorBoard logs, eval.json) and they are written here; without it each run checks "
                             "whether it sees --out")


def grid_from_args(args: argparse.Namespace) -> RayGrid | None:
    """The :class:`RayGrid` the options ask for; None for ``--engine local``. ValueError on a misuse,
    :class:`~collectors.ray_cluster.RayUnavailableError` (saying how to install it) without Ray."""
    if args.engine != "ray":
        used = [flag for flag, on in (("--address", args.address is not None), ("--gpus-per-run", args.gpus_per_run),
                                      ("--no-shared-fs", args.no_shared_fs)) if on]
        if used:
            raise ValueError(f"{', '.join(used)}: only with --engine ray")
        return None
    if args.gpus_per_run < 0:
        raise ValueError(f"--gpus-per-run must be >= 0, got {args.gpus_per_run}")
    import_ray()  # before any work: a missing extra is said at once
    return RayGrid(address=args.address, gpus_per_run=args.gpus_per_run, shared_fs=False if args.no_shared_fs else None)


def checkpoint_paths(cfg: TrainConfig) -> list[str]:
    """The checkpoint files a run reads: its ``--reward`` model's and its ``--pbrs`` potential's."""
    _, reward_path = parse_reward(cfg.reward)
    return [p for p in (reward_path, pbrs_path(cfg.pbrs)) if p]


def train_run(cfg: TrainConfig, step_seconds: float | None, out_dir: str, token: str | None,
              checkpoints: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run, in a Ray worker: ``{"summary": ..., "files": None}`` when it wrote into ``cfg.logdir``
    itself, else ``"files"`` maps each path under the run directory to its bytes. ``checkpoints``:
    the bytes (or Ray references to them) of :func:`checkpoint_paths`, used where ``out_dir`` is
    not the driver's."""
    import torch

    from agents.train import train_agent

    torch.set_num_threads(1)  # one CPU declared, one used: runs beside each other do not fight
    if token is not None and sees_marker(out_dir, token):
        return {"summary": train_agent(cfg, step_seconds=step_seconds), "files": None}
    with tempfile.TemporaryDirectory(prefix="rewardswap-run-") as tmp:
        local = {}
        for k, (path, content) in enumerate((checkpoints or {}).items()):
            local[path] = write_atomic(pathlib.Path(tmp, "checkpoints", str(k), pathlib.Path(path).name),
                                       content if isinstance(content, bytes) else _fetch(content))
        kind, reward_path = parse_reward(cfg.reward)
        run_dir = pathlib.Path(tmp) / pathlib.Path(cfg.logdir).name
        here = replace(cfg, logdir=str(run_dir), pbrs=str(local.get(cfg.pbrs, cfg.pbrs)) if cfg.pbrs else None,
                       reward=f"{kind}:{local.get(reward_path, reward_path)}" if reward_path else cfg.reward)
        summary = {**train_agent(here, step_seconds=step_seconds), "reward": cfg.reward, "pbrs": cfg.pbrs}
        # What the run saved names the paths it lands in and read, not this node's temp copies.
        saved = json.loads((run_dir / "run_config.json").read_text())
        saved["config"].update(logdir=cfg.logdir, reward=cfg.reward, pbrs=cfg.pbrs)
        (run_dir / "run_config.json").write_text(json.dumps(saved, indent=2, default=str) + "\n")
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
        files = {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    return {"summary": summary, "files": files}


def _fetch(ref: Any) -> bytes:
    import ray

    return ray.get(ref)


def write_returned_files(run_dir: str | pathlib.Path, files: dict[str, bytes]) -> None:
    """A run's returned files under ``run_dir``, each atomically, :data:`WRITTEN_LAST` last."""
    root = pathlib.Path(run_dir).resolve()
    for name in sorted(files, key=lambda n: (n in WRITTEN_LAST, n)):
        path = (root / name).resolve()
        if root not in path.parents:  # a returned name never leaves its run directory
            raise ValueError(f"a run returned the file {name!r}, outside its directory {root}")
        write_atomic(path, files[name])


def run_grid_on_ray(
    grid: RayGrid,
    keys: Sequence[tuple[str, int]],
    configs: Sequence[TrainConfig],
    out_dir: str | pathlib.Path,
    step_seconds: float | None = None,
    on_done: Callable[[tuple[str, int]], None] = lambda key: None,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Every config as one Ray task; their summaries by key, as they finish (``on_done`` each)."""
    # Absolute: a worker on another node does not start in the driver's working directory.
    out_dir = pathlib.Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = [replace(cfg, logdir=str(pathlib.Path(cfg.logdir).resolve())) for cfg in configs]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with ray_session(grid.address) as ray, _marker(out_dir, grid.shared_fs) as token:
        if grid.gpus_per_run > 0 and ray.cluster_resources().get("GPU", 0) < grid.gpus_per_run:
            raise RayUnavailableError(f"--gpus-per-run {grid.gpus_per_run:g}: the Ray cluster has "
                                      f"{ray.cluster_resources().get('GPU', 0):g} GPU(s), so the runs would wait "
                                      "forever; join a cluster with GPUs (--address) or drop --gpus-per-run")
        task = ray.remote(train_run).options(num_cpus=1, num_gpus=grid.gpus_per_run, max_retries=grid.max_retries,
                                             retry_exceptions=False)
        # Put once, read by a task only where it does not see --out: nothing moves on a shared filesystem.
        shipped = {} if grid.shared_fs is True else {
            path: ray.put(pathlib.Path(path).read_bytes()) for cfg in configs for path in checkpoint_paths(cfg)}
        pending = {task.remote(cfg, step_seconds, str(out_dir), token,
                               {path: shipped[path] for path in checkpoint_paths(cfg) if path in shipped}): (key, cfg)
                   for key, cfg in zip(keys, configs)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                key, cfg = pending.pop(done[0])
                returned = ray.get(done[0])
                if returned["files"] is not None:
                    write_returned_files(cfg.logdir, returned["files"])
                results[key] = returned["summary"]
                on_done(key)
        finally:
            for ref in pending:  # a failed run ends the grid, as with the local pool
                ray.cancel(ref)
    return results


def _marker(out_dir: pathlib.Path, shared_fs: bool | None) -> contextlib.AbstractContextManager[str | None]:
    """The shared-filesystem marker's token, or None (no marker) where ``--no-shared-fs`` ruled it out."""
    return contextlib.nullcontext(None) if shared_fs is False else shared_fs_marker(out_dir)


__all__ = ["RayGrid", "add_arguments", "grid_from_args", "run_grid_on_ray", "train_run", "write_returned_files"]
