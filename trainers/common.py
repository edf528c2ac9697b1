"""Pieces every trainer shares: seeding, device choice, logging, early stopping, reports."""

from __future__ import annotations

import argparse
import copy
import os
import pathlib
import random
from typing import Any

import numpy as np
import torch

from reward_wrappers.models.frames import STRATEGIES, FrameSampling



def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for the trainer's own draws."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_writer(logdir: str | os.PathLike | None):
    """A TensorBoard SummaryWriter, or None when no logdir is given."""
    if logdir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=os.fspath(logdir))


class Optimizer:
    """AdamW over the trainable parameters with a cosine learning-rate decay, one ``step`` per batch."""

    def __init__(self, module: torch.nn.Module, lr: float, weight_decay: float, total_steps: int) -> None:
        self.optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(total_steps, 1), eta_min=lr * 0.05)

    def step(self, loss: torch.Tensor) -> float:
        """Backpropagate ``loss``, update, advance the schedule; return the loss value."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]


class EarlyStopping:
    """Keep the best weights by validation loss; stop after ``patience`` epochs without gain."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def update(self, epoch: int, val_loss: float, module: torch.nn.Module) -> bool:
        """Record an epoch; return True when training should stop."""
        if val_loss < self.best_loss - 1e-6:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names what was given).

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def add_fit_arguments(parser: argparse.ArgumentParser, *, batch_size: int = 128, batch_help: str | None = None,
                      images: bool = True) -> None:
    """The ``train-reward`` options every model kind shares (same names, meanings and defaults);
    ``images=False`` for a kind that never reads images (no ``--no-augment``)."""
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help=batch_help)
    parser.add_argument("--lr", type=positive_float, default=3e-4)
    parser.add_argument("--val-fraction", type=fraction, default=0.2, help="fraction of trajectories held out")
    if images:
        parser.add_argument("--no-augment", action="store_true", help="disable random-shift augmentation of images")
    parser.add_argument("--patience", type=positive_int, default=5, help="early-stopping patience in epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when not a terminal)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--logdir", default=None, help="TensorBoard log directory")


def add_frame_arguments(parser: argparse.ArgumentParser, *, window: int, window_help: str) -> None:
    """``--window``, ``--frame-sampling`` and ``--stride``: which frames an image/video model reads."""
    parser.add_argument("--window", type=positive_int, default=window, help=window_help)
    parser.add_argument("--frame-sampling", choices=STRATEGIES, default="last",
                        help="which frames fill the window: the last ones, every --stride-th back from the current "
                             "frame, or spread uniformly over the episode so far (all causal)")
    parser.add_argument("--stride", type=positive_int, default=1, help="frame gap for --frame-sampling strided")


def frame_sampling(args: argparse.Namespace) -> FrameSampling:
    """The :class:`FrameSampling` the options of :func:`add_frame_arguments` describe."""
    return FrameSampling(args.window, args.frame_sampling, args.stride)


def fit_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``fit_*`` keyword arguments from the options :func:`add_fit_arguments` added."""
    images = {"augment": not args.no_augment} if hasattr(args, "no_augment") else {}
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction,
                patience=args.patience, seed=args.seed, device=args.device, logdir=args.logdir,
                progress=not args.no_progress, **images)


def report_path(out: str | os.PathLike, suffix: str) -> pathlib.Path:
    """Sibling file of a checkpoint: ``model.pt`` -> ``model.report.json`` for suffix ``.report.json``."""
    out = pathlib.Path(out)
    return out.with_name(out.stem + suffix)
