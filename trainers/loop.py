"""The one fitting loop every reward-model kind trains with.

A kind supplies two closures: ``train_batch()`` draws and scores one training batch (returning
the loss tensor and how many items it held) and ``validate()`` measures the held-out split
(returning ``val_*`` figures, ``val_loss`` among them). :func:`fit_loop` owns the rest, the same
for every kind: AdamW with a cosine schedule, ``train()``/``eval()`` modes, a tqdm bar (off when
not a terminal), TensorBoard scalars (the writer is closed even when training raises), early
stopping on ``val_loss`` with the best weights restored, and throughput.
:func:`save_fitted` writes the checkpoint and its JSON report, both atomically.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> net = torch.nn.Linear(1, 1)
>>> x = torch.linspace(-1, 1, 32)[:, None]
>>> def train_batch():
...     return ((net(x) - 3 * x) ** 2).mean(), len(x)
>>> def validate():
...     with torch.no_grad():
...         return {"val_loss": float(((net(x) - 3 * x) ** 2).mean())}
>>> result = fit_loop(net, train_batch, validate, epochs=30, steps=20, lr=0.05, progress=False)
>>> result.history[-1]["val_loss"] < 0.01 < result.history[0]["val_loss"]
True
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from collectors.atomic import write_json_atomic
from trainers.common import EarlyStopping, Optimizer, make_writer, report_path
from trainers.data import load_buffers, trajectory_marks

TrainBatch = Callable[[], tuple[torch.Tensor, int]]
"""Draw one training batch and return ``(loss, items in the batch)``."""
Validate = Callable[[], dict[str, float]]
"""Measure the held-out split; the dict holds ``val_loss`` and any other ``val_*`` figures."""
EpochHook = Callable[[Any, int], None]
"""Called after each epoch's scalars with ``(SummaryWriter, global step)`` when logging, e.g. histograms."""


@dataclass
class LoopResult:
    """What a fit produced beside its (restored best) weights."""

    history: list[dict[str, float]]
    best_epoch: int
    items_per_second: float

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def report_fields(self, unit: str = "frames") -> dict[str, Any]:
        """The fields every kind's report carries: best epoch, epochs run, throughput, history."""
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                f"train_{unit}_per_second": self.items_per_second, "history": self.history}


def fit_loop(
    net: torch.nn.Module,
    train_batch: TrainBatch,
    validate: Validate,
    *,
    epochs: int,
    steps: int,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    patience: int = 5,
    desc: str = "fit",
    unit: str = "frames",
    logdir: str | os.PathLike | None = None,
    progress: bool = True,
    postfix: Sequence[str] = ("val_loss",),
    on_epoch: Optional[EpochHook] = None,
) -> LoopResult:
    """Train ``net`` for up to ``epochs`` x ``steps`` batches; stop early after ``patience``
    epochs without a lower ``val_loss`` and leave the best epoch's weights in ``net`` (eval mode).

    ``unit`` names what ``train_batch`` counts (TensorBoard's ``train/<unit>_per_second``);
    ``postfix`` names the ``validate()`` figures shown on the progress bar.
    """
    optimizer = Optimizer(net, lr, weight_decay, epochs * steps)
    stopper = EarlyStopping(patience)
    history: list[dict[str, float]] = []
    items, train_seconds = 0, 0.0
    writer = make_writer(logdir)
    bar = tqdm(total=epochs * steps, desc=desc, unit="batch", disable=None if progress else True)  # None: off when not a tty
    try:
        for epoch in range(epochs):
            net.train()
            epoch_start, losses, epoch_items = time.perf_counter(), [], 0
            for _ in range(steps):
                loss, n = train_batch()
                losses.append(optimizer.step(loss))
                epoch_items += n
                bar.update(1)
            epoch_seconds = time.perf_counter() - epoch_start
            items, train_seconds = items + epoch_items, train_seconds + epoch_seconds
            net.eval()
            held_out = validate()
            if "val_loss" not in held_out:
                raise KeyError(f"validate() must return 'val_loss' (early stopping reads it); it returned {sorted(held_out)}")
            record = {"epoch": epoch, "train_loss": float(sum(losses) / len(losses)), **held_out}
            history.append(record)
            bar.set_postfix({"loss": f"{record['train_loss']:.4f}", **{k.removeprefix("val_"): f"{record[k]:.4f}" for k in postfix}})
            if writer is not None:
                step = (epoch + 1) * steps
                writer.add_scalar("train/loss", record["train_loss"], step)
                writer.add_scalar("train/lr", optimizer.lr, step)
                writer.add_scalar(f"train/{unit}_per_second", epoch_items / max(epoch_seconds, 1e-9), step)
                for key, value in held_out.items():
                    if key.startswith("val_") and isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(key.replace("val_", "val/", 1), value, step)
                if on_epoch is not None:
                    on_epoch(writer, step)
            if stopper.update(epoch, record["val_loss"], net):
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    stopper.restore(net)
    net.eval()
    return LoopResult(history, stopper.best_epoch, items / max(train_seconds, 1e-9))


def save_fitted(
    model: Any,
    out: str | os.PathLike,
    report: Mapping[str, Any],
    *,
    env: Optional[dict[str, Any]],
    data: Any,
    seed: int,
    detail_keys: Sequence[str] = ("history", "val_trajectory_ids"),
    metadata: Optional[Mapping[str, Any]] = None,
    embeddings: Optional[Mapping[str, Any]] = None,
) -> pathlib.Path:
    """Write the checkpoint (its metadata holds the report minus ``detail_keys``) and
    ``<out>.report.json`` (the whole report), both atomically; return the checkpoint path.
    ``embeddings`` (``trainers.data.recorded_embeddings``) names the backbone of each input that is
    a stored embedding, so serving can refuse another one."""
    from reward_wrappers.models.checkpoint import save_reward_model

    summary = {k: v for k, v in report.items() if k not in detail_keys}
    if "labels" not in (metadata or {}):  # every kind: the success marks its data's trajectories carry
        marks = trajectory_marks(load_buffers(data))
        metadata = {**(metadata or {}), "labels": {"trajectory_marks": len(marks), "trajectory_ids": marks}}
    path = save_reward_model(model, out, metadata={
        "env": env, "report": summary, "val_trajectory_ids": report.get("val_trajectory_ids"), "seed": seed,
        "data": os.fspath(data) if isinstance(data, (str, os.PathLike)) else None,
        # Only when some input is an embedding: other checkpoints' metadata stays as it was.
        **({"embeddings": dict(embeddings)} if embeddings else {}), **(metadata or {}),
    })
    write_json_atomic(report_path(path, ".report.json"), report)
    return path
