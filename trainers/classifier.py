"""Fit a frame-level success classifier from positive/negative trajectory buffers.

The classifier scores one observation: ``logit = f(obs)``, ``p(success) = sigmoid(logit)``.
Training is honest by construction: train and validation are split **by trajectory**, batches
are balanced between success and non-success frames, and every reported figure is measured on
held-out trajectories. The checkpoint describes itself, so ``load_reward_model(path)`` is all a
user needs at load time.

>>> from trainers import fit_classifier                                  # doctest: +SKIP
>>> fit_classifier("buffers/", "classifier.pt", inputs=("rgb",), epochs=10)  # doctest: +SKIP
PosixPath('classifier.pt')
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reward_wrappers.models.base import ModelSpec, sigmoid
from reward_wrappers.models.networks import TorchRewardModel, batch_to_tensors
from reward_wrappers.sb3 import VecLearnedReward
from trainers.kinds import RewardKind, register_reward_kind
from collectors.atomic import write_atomic
from reward_wrappers.models.frames import FramesLike, as_frame_sampling
from trainers.common import (add_fit_arguments, add_frame_arguments, fit_arguments, frame_sampling, report_path, resolve_device,
                             seed_everything)
from trainers.data import (
    DataLike,
    FrameTable,
    balanced_indices,
    gather,
    trajectory_marks,
    input_specs,
    iterate_rows,
    load_buffers,
    choose_inputs,
    augment_images,
    recorded_embeddings,
    recorded_env,
    split_by_trajectory,
    state_statistics,
)
from trainers.loop import fit_loop, save_fitted
from trainers.metrics import best_f1_threshold, binary_metrics, precision_threshold, roc_auc

def fit_classifier(
    data: DataLike,
    out: str | os.PathLike,
    *,
    inputs: Sequence[str] | None = None,
    window: FramesLike = 1,
    encoder: str = "cnn",
    pretrained: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    augment: bool = True,
    patience: int = 5,
    steps_per_epoch: int | None = None,
    hidden: int = 256,
    seed: int = 0,
    device: str = "auto",
    logdir: str | os.PathLike | None = None,
    progress: bool = True,
    init: TorchRewardModel | None = None,
    metadata: dict[str, Any] | None = None,
    threshold_precision: float | None = None,
    min_threshold: float | None = None,
    focus: Sequence[Any] = (),
    focus_share: float = 0.5,
    unlabelled: dict[str, np.ndarray] | None = None,
    prior: float = 0.0,
) -> pathlib.Path:
    """Train a success classifier; write the checkpoint to ``out`` and return its path.

    Beside the checkpoint: ``<out>.report.json`` (held-out accuracy, AUC, precision, recall at the
    suggested threshold and at 0.5, sample counts, timing) and ``<out>.errors.png`` (the worst false
    positives and false negatives with their scores). ``pretrained`` is a ``.pt`` state dict for
    the image encoder (loaded with ``weights_only=True``); ``freeze_encoder`` keeps it fixed.
    ``window > 1`` (a count, or a :class:`~reward_wrappers.models.frames.FrameSampling` for strided or
    uniform frames) classifies frame ``t`` from the causal window ``t - window + 1 .. t`` (first frame
    repeated at an episode start, as the wrappers feed it online): motion becomes visible, e.g.
    ManiSkill's "robot is static" part of success, which no single frame shows.

    ``focus`` trajectories are added to ``data`` and take ``focus_share`` of each class's half of
    every training batch (see :func:`trainers.data.balanced_indices`): the refits pass the frames
    labelled during training, a few hundred beside thousands of recorded ones.

    ``unlabelled`` frames (``{key: (N, *shape)}``, one frame each: an agent's own) enter as
    positive-unlabelled data (non-negative PU risk, Kiryo et al. 2017): they are treated as
    negatives except for a ``prior`` share of their mass, the estimated fraction of successes among
    them, and their negative risk is never driven below zero. Unlike VICE's "every agent frame is a
    failure", a classifier fitted so keeps paying an agent that really succeeds. Window-1 models only.

    ``init`` fine-tunes a copy of an existing classifier (its architecture, weights and state
    normalisation; ``inputs``, ``window``, ``encoder`` and ``hidden`` are taken from it) instead of
    a fresh network: the in-training refits do this. ``metadata`` is added to the checkpoint's.

    The saved threshold maximises held-out F1; with ``threshold_precision`` it is raised, where
    needed, to the lowest one whose held-out precision reaches that value (agents exploit false
    positives, so a refit trades recall for precision); ``min_threshold`` is a floor under it.
    """
    if init is not None:
        inputs, window = tuple(init.spec.inputs), init.spec.frame_sampling
    window = as_frame_sampling(window)  # raises on a window below 1
    rng = seed_everything(seed)
    torch_device = resolve_device(device)
    if not 0.0 <= focus_share < 1.0:
        raise ValueError(f"focus_share must be in [0, 1), got {focus_share}")
    if not 0.0 <= prior < 1.0:
        raise ValueError(f"prior must be in [0, 1), got {prior}")
    if unlabelled is not None and window.frames != 1:
        raise ValueError("unlabelled frames are single frames; a window-1 classifier is needed")
    recorded = load_buffers(data)
    trajectories = [*recorded, *focus]
    inputs = choose_inputs(recorded, inputs)
    specs = input_specs(trajectories, inputs)
    embeddings = recorded_embeddings(recorded, inputs)  # checked now: a disagreement would fail after training
    if not any(float(np.max(t.labels)) > 0.5 for t in trajectories):
        raise ValueError(
            f"no success frames in {len(trajectories)} trajectories: a classifier needs positives "
            "(collect with an expert, e.g. `rewardswap collect --policy expert`)"
        )
    train, val = split_by_trajectory(trajectories, val_fraction, seed)
    train_table, val_table = FrameTable.from_trajectories(train), FrameTable.from_trajectories(val)
    focused = {id(t) for t in focus}
    focus_rows = np.array([id(train[i]) in focused for i in train_table.traj], bool) if focused else None
    for name, table in (("train", train_table), ("val", val_table)):
        if len(table.positives) == 0 or len(table.negatives) == 0:
            raise ValueError(
                f"the {name} split has {len(table.positives)} positive and {len(table.negatives)} negative frames; "
                "both are needed: record more successful and failed trajectories"
            )

    spec = ModelSpec(inputs=specs, **window.spec_fields(), output="logit")
    if init is not None:
        if dict(init.spec.inputs) != specs:
            raise ValueError(f"init model reads {dict(init.spec.inputs)}, the data has {specs}")
        before = init.metadata.get("embeddings") or {}
        for key, record in (embeddings or {}).items():
            if key in before and before[key].get("identity") != record["identity"]:
                raise ValueError(f"init model read {key!r} embedded by {before[key].get('identity')}, "
                                 f"the data's {key!r} is embedded by {record['identity']}")
        model = TorchRewardModel(copy.deepcopy(init.net), spec, init.arch, init.metadata)
        encoder = str(init.arch.get("kwargs", {}).get("encoder", encoder))
    else:
        model = TorchRewardModel.build(spec, encoder=encoder, hidden=hidden)
    net = model.net.to(torch_device)
    for key, inp in specs.items():
        if len(inp.shape) == 1 and init is None:
            net.set_state_normalization(key, *state_statistics(train, key))
    if pretrained is not None:
        _load_pretrained_encoder(net, pretrained)
    if freeze_encoder:
        if not net.image_keys:
            raise ValueError("freeze_encoder freezes the image encoder, but inputs name no image key")
        for key in net.image_keys:
            for p in net.encoders[key].parameters():
                p.requires_grad_(False)

    steps = steps_per_epoch or max(1, math.ceil(len(train_table) / batch_size))
    if unlabelled is not None and steps_per_epoch is None:  # an epoch also passes over the unlabelled frames once
        steps = max(steps, math.ceil(len(next(iter(unlabelled.values()))) / max(1, batch_size // 2)))
    image_keys = [k for k, v in specs.items() if len(v.shape) == 3]

    def train_batch() -> tuple[torch.Tensor, int]:
        rows = balanced_indices(train_table, batch_size, rng, focus_rows, focus_share)
        batch = gather(train, train_table.traj[rows], train_table.frame[rows], inputs, window)
        if augment:
            augment_images(batch, image_keys, rng)
        labels = torch.as_tensor(train_table.label[rows], device=torch_device)
        logits = net(batch_to_tensors(batch, torch_device))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        if unlabelled is not None:
            loss = loss + pu_negative_risk(net, unlabelled, logits[labels > 0.5], prior, batch_size, rng, image_keys,
                                           augment, torch_device)
        return loss, len(rows)

    held_out: dict[str, np.ndarray] = {}

    def validate() -> dict[str, float]:
        held_out["scores"] = scores = predict_frames(model, val, val_table, inputs, batch_size * 2)
        at_half = binary_metrics(sigmoid(scores), val_table.label, 0.5)
        bce, auc = balanced_bce(scores, val_table.label), roc_auc(scores, val_table.label)
        # With unlabelled frames the PU term shifts every score down (by design: most agent frames are
        # failures), which raises the labelled frames' BCE early on; the best epoch is then the one
        # that ranks them best (the threshold is chosen afterwards on the same frames).
        return {"val_loss": 1.0 - auc if unlabelled is not None else bce, "val_bce": bce, "val_auc": auc,
                **{f"val_{k}": at_half[k] for k in ("accuracy", "precision", "recall")}}

    def histograms(writer: Any, step: int) -> None:
        writer.add_histogram("val/score_positive", held_out["scores"][val_table.label > 0.5], step)
        writer.add_histogram("val/score_negative", held_out["scores"][val_table.label <= 0.5], step)

    fitted = fit_loop(net, train_batch, validate, epochs=epochs, steps=steps, lr=lr, weight_decay=weight_decay,
                      patience=patience, desc="classifier", logdir=logdir, progress=progress,
                      postfix=("val_loss", "val_auc"), on_epoch=histograms)

    scores = predict_frames(model, val, val_table, inputs, batch_size * 2)
    probs = sigmoid(scores)
    threshold = best_f1_threshold(probs, val_table.label)
    if min_threshold is not None:
        threshold = max(threshold, float(min_threshold))
    if threshold_precision is not None:
        precise = precision_threshold(probs, val_table.label, threshold_precision)
        threshold = threshold if precise is None else max(threshold, precise)
    model.spec = ModelSpec(inputs=specs, **window.spec_fields(), output="logit", threshold=threshold)
    report = {
        "kind": "classifier",
        "inputs": list(inputs),
        **window.spec_fields(),
        "encoder": encoder if any(len(v.shape) == 3 for v in specs.values()) else None,  # state-only: none
        "seed": seed,
        "val_auc": roc_auc(scores, val_table.label),
        "val_loss": balanced_bce(scores, val_table.label),
        "suggested_threshold": threshold,
        "threshold_precision": threshold_precision,
        "at_suggested_threshold": binary_metrics(probs, val_table.label, threshold),
        "at_threshold_0.5": binary_metrics(probs, val_table.label, 0.5),
        "counts": {
            "train_trajectories": len(train),
            "val_trajectories": len(val),
            "train_frames_positive": int(len(train_table.positives)),
            "train_frames_negative": int(len(train_table.negatives)),
            "val_frames_positive": int(len(val_table.positives)),
            "val_frames_negative": int(len(val_table.negatives)),
        },
        **fitted.report_fields(),
        "val_trajectory_ids": [str(getattr(t, "id", t.path)) for t in val],
        "labels": {"trajectory_marks": len(trajectory_marks(recorded))},
    }
    env = recorded_env(recorded) or (init.metadata.get("env") if init is not None else None)
    embeddings = embeddings or (init.metadata.get("embeddings") if init is not None else None)
    marks = trajectory_marks(recorded)  # one label each; labelled frames of a refit are counted by the refit
    metadata = {"labels": {"trajectory_marks": len(marks), "trajectory_ids": marks}, **(metadata or {})}
    out = save_fitted(model, out, report, env=env, data=data, seed=seed, metadata=metadata, embeddings=embeddings)
    write_error_grid(report_path(out, ".errors.png"), val, val_table, probs)
    return out


def pu_negative_risk(net: torch.nn.Module, unlabelled: dict[str, np.ndarray], positive_logits: torch.Tensor,
                     prior: float, batch_size: int, rng: np.random.Generator, image_keys: Sequence[str], augment: bool,
                     device: torch.device) -> torch.Tensor:
    """The non-negative PU estimate of the negative class's risk on a batch of unlabelled frames:
    ``max(0, E_U[softplus(f)] - prior * E_P[softplus(f)])`` (the logistic loss of calling a frame a
    failure is ``softplus(f)``), so at most ``1 - prior`` of the unlabelled mass is pushed to failure."""
    n = len(next(iter(unlabelled.values())))
    rows = rng.integers(0, n, size=batch_size // 2)
    batch = {k: v[rows] for k, v in unlabelled.items()}
    if augment:
        augment_images(batch, image_keys, rng)
    logits = net(batch_to_tensors(batch, device))[:, 0]
    risk = F.softplus(logits).mean()
    if prior > 0 and len(positive_logits):
        risk = risk - prior * F.softplus(positive_logits).mean()
    return torch.clamp(risk, min=0.0)


def predict_frames(model: TorchRewardModel, trajectories: Sequence[Any], table: FrameTable, keys: Sequence[str], batch_size: int) -> np.ndarray:
    """Raw model outputs for every row of ``table``, in order."""
    model.net.eval()
    out = np.empty(len(table), dtype=np.float64)
    for rows in iterate_rows(len(table), batch_size):
        batch = gather(trajectories, table.traj[rows], table.frame[rows], keys, model.spec.frame_sampling)
        out[rows] = model.predict(batch)
    return out


def balanced_bce(logits: np.ndarray, labels: np.ndarray) -> float:
    """BCE with each class weighted to half the total, matching the balanced training batches."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.float64)
    per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    pos = labels > 0.5
    return float(0.5 * per[pos].mean() + 0.5 * per[~pos].mean())


def _load_pretrained_encoder(net: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load image-encoder weights from a plain state dict saved with ``torch.save``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"pretrained weights {path} must be a state dict, got {type(state).__name__}")
    targets = [enc for key, enc in net.encoders.items() if key in net.image_keys]
    if not targets:
        raise ValueError(f"pretrained weights {path} given, but the model has no image input")
    for enc in targets:
        missing, unexpected = enc.load_state_dict(state, strict=False)
        if len(missing) == len(list(enc.state_dict())):
            raise ValueError(
                f"pretrained weights {path} match none of the encoder's parameters "
                f"(expected keys like {sorted(enc.state_dict())[:3]}, got {sorted(state)[:3]})"
            )


def write_error_grid(path: pathlib.Path, trajectories: Sequence[Any], table: FrameTable, probs: np.ndarray, n: int = 8) -> pathlib.Path:
    """PNG: top row the ``n`` negatives with the highest scores, bottom row the lowest-scored positives."""
    import cv2

    neg, pos = table.negatives, table.positives
    worst_fp = neg[np.argsort(-probs[neg])[:n]]
    worst_fn = pos[np.argsort(probs[pos])[:n]]
    image_key = next((k for k in trajectories[0].obs if trajectories[0].obs[k].ndim == 4 and trajectories[0].obs[k].dtype == np.uint8), None)
    tile = 96
    canvas = np.full((2 * (tile + 16) + 24, n * tile, 3), 255, np.uint8)
    cv2.putText(canvas, "false positives (neg, high p) / false negatives (pos, low p)", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    for row, picks in enumerate((worst_fp, worst_fn)):
        for col, r in enumerate(picks):
            traj = trajectories[int(table.traj[r])]
            y0, x0 = 24 + row * (tile + 16), col * tile
            if image_key is not None:
                img = np.asarray(traj.obs[image_key][int(table.frame[r])])[..., :3]
                canvas[y0 : y0 + tile, x0 : x0 + tile] = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_NEAREST)
            label = f"p={probs[r]:.2f} t={int(table.frame[r])}"
            cv2.putText(canvas, label, (x0 + 2, y0 + tile + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (200, 0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", canvas[..., ::-1])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    return write_atomic(path, buf.tobytes())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect` (has positive/ and negative/)")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt); the report and error grid go beside it")
    parser.add_argument("--inputs", nargs="+", default=None,
                        help="observation keys the classifier reads (images, state, or both); default: the data's image "
                             "keys, else its state")
    add_frame_arguments(parser, window=1, window_help="frames the classifier reads (a causal window ending at the frame judged)")
    parser.add_argument("--encoder", choices=["cnn", "resnet10"], default="cnn", help="image encoder")
    parser.add_argument("--pretrained", default=None, help="state-dict file for the image encoder")
    parser.add_argument("--freeze-encoder", action="store_true", help="keep the image encoder fixed")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass over the train frames)")
    add_fit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out = fit_classifier(
        args.data, args.out, inputs=args.inputs, window=frame_sampling(args), encoder=args.encoder, pretrained=args.pretrained,
        freeze_encoder=args.freeze_encoder, steps_per_epoch=args.steps_per_epoch, **fit_arguments(args),
    )
    import json

    report = json.loads(report_path(out, ".report.json").read_text())
    m = report["at_suggested_threshold"]
    print(
        f"wrote {out}\n  val AUC {report['val_auc']:.4f}  accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  "
        f"recall {m['recall']:.4f}  at threshold {report['suggested_threshold']:.3f}\n"
        f"  report {report_path(out, '.report.json')}  errors {report_path(out, '.errors.png')}\n"
        f"  labels: {report['labels']['trajectory_marks']} trajectory success marks (one per trajectory fitted on)"
    )
    return 0


register_reward_kind(RewardKind('classifier', 'frame-level success classifier (HIL-SERL / RLinf style)', add_arguments, run, wrapper=VecLearnedReward, default_output='prob'))
