"""Store a frozen backbone's per-frame embeddings of an image key as a new field of each trajectory.

``rewardswap embed`` runs a :class:`~reward_wrappers.models.backbones.Backbone` over ``obs.<key>`` of
every trajectory in a buffer and writes ``obs.<out_key>.npy`` (``(T+1, D)`` float16, the stored
dtype the online :class:`~reward_wrappers.embedding.EmbedObservation` rounds to as well) beside
it. ``meta.json`` then lists the field like any recorded one and records where it came from under
``"embeddings"``: ``{out_key: {"identity", "source", "from", "batch_rows", "device"}}``. Any ``train-reward`` kind reads
the new key as a state vector (``--inputs rgb_emb``) and copies the backbone identity into the
checkpoint.

Crash safety follows the recorder: each ``.npy`` is written to a temp name inside the trajectory
directory and ``os.replace`` d into place, then ``meta.json`` is replaced atomically, so a kill at
any point leaves every trajectory readable, without the field or with it complete. A rerun skips
trajectories that already hold ``out_key`` from the same backbone identity and refuses (before
writing anything) ones holding it from another backbone.

Examples:
  rewardswap embed --data data/reach --backbone torchscript:encoder.pt
  rewardswap embed --data data/pick --backbone torchvision:resnet18@resnet18.pth --device cuda --out-key rgb_r18
  rewardswap embed --data data/reach --backbone rewardswap:success.pt#rgb --out-key rgb_cls

>>> import tempfile, torch
>>> from collectors.writer import new_trajectory_id, write_trajectory
>>> from collectors import load_trajectories
>>> from reward_wrappers.models.backbones import Backbone
>>> root = tempfile.mkdtemp()
>>> fields = {"obs.rgb": np.zeros((3, 4, 4, 3), np.uint8), "actions": np.zeros((2, 1), np.float32),
...           "rewards": np.zeros(2), "labels": np.zeros(3, np.float32),
...           "terminated": np.zeros(2, bool), "truncated": np.array([False, True])}
>>> _ = write_trajectory(root, "negative", new_trajectory_id(), fields, {"success": False})
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 3, 8))
>>> stats = embed_buffers(root, Backbone(net, name="tiny"), progress=False)
>>> stats["embedded"], stats["skipped"], stats["frames"]
(1, 0, 3)
>>> emb = load_trajectories(root)[0].obs["rgb_emb"]
>>> emb.shape, emb.dtype
((3, 8), dtype('float16'))
>>> embed_buffers(root, Backbone(net, name="tiny"), progress=False)["skipped"]
1
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from collectors.atomic import write_atomic, write_json_atomic
from collectors.format import FIELD_NAME, META_FILE, read_meta
from collectors.root import exclusive_lock
from collectors.writer import describe_fields
from reward_wrappers.models.backbones import Backbone, load_backbone, to_stored
from trainers.data import DataLike, load_buffers

if TYPE_CHECKING:
    import torch

__all__ = ["embed_buffers", "add_arguments", "run"]


def _out_key(key: str, out_key: str | None) -> str:
    out_key = out_key or f"{key}_emb"
    # The field becomes a file stem inside each trajectory directory: same rule as the recorder's fields.
    if not FIELD_NAME.fullmatch(f"obs.{out_key}") or ".." in out_key or "/" in out_key:
        raise ValueError(f"out_key {out_key!r} is not a plain field name (letters, digits, '_', '.', '-')")
    if out_key == key:
        raise ValueError(f"out_key {out_key!r} is the image key itself; pick another --out-key")
    return out_key


def _check(traj: Any, key: str, out_key: str, identity: str) -> bool:
    """Whether ``traj`` still needs embedding; raise ``ValueError`` naming it if it cannot be."""
    if key not in traj.obs:
        raise ValueError(f"trajectory {traj.path} has no observation key {key!r}; it has {sorted(traj.obs)}")
    frames = traj.obs[key]
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"trajectory {traj.path}: obs.{key} is {frames.dtype}{list(frames.shape)}, "
                         "not uint8 images (T+1, H, W, C); pick an image key with --key")
    recorded = (traj.meta.get("embeddings") or {}).get(out_key)
    if recorded is not None:
        recorded_identity = recorded["identity"]
        if recorded_identity == identity:
            return False  # done by an earlier run with this very backbone: resume past it
        raise ValueError(
            f"trajectory {traj.path} already holds {out_key!r} embedded by {recorded_identity}, not by this "
            f"backbone {identity}; pick another --out-key (existing embeddings are never overwritten)")
    if out_key in traj.obs:
        raise ValueError(f"trajectory {traj.path} already has a recorded field obs.{out_key} that is not an embedding; "
                         "pick another --out-key")
    return True


def _save_npy(array: np.ndarray) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        # An open file: np.save given a name not ending in .npy would append the suffix.
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
    return write


def _store(traj: Any, key: str, out_key: str, backbone: Backbone, embeddings: np.ndarray) -> bool:
    """Write ``obs.<out_key>.npy``, then list it in ``meta.json``: the field is visible only once
    complete. False when a concurrent run stored the same embeddings meanwhile."""
    if not np.isfinite(embeddings).all():
        # float16 tops out at 65504: larger features would be stored as inf without this check.
        raise ValueError(f"trajectory {traj.path}: the backbone's embeddings of obs.{key} are not finite in float16 "
                         f"(NaN, or |x| > 65504); normalise the backbone's output")
    field = f"obs.{out_key}"
    # Two runs on one buffer at once must not pair one backbone's file with the other's identity:
    # the check against meta.json on disk and both writes happen under one lock.
    with exclusive_lock(traj.path):  # the trajectory directory itself: nothing is added to it
        meta = read_meta(traj.path)  # what is on disk now, not the copy loaded at the start
        recorded = (meta.get("embeddings") or {}).get(out_key)
        if recorded is not None:
            identity = recorded["identity"]
            if identity == backbone.identity:
                return False
            raise ValueError(f"trajectory {traj.path}: another run stored {out_key!r} from {identity} meanwhile; "
                             f"this backbone is {backbone.identity}; pick another --out-key")
        # Temps of a run killed mid-write (write_atomic's names): this trajectory is being redone.
        for stale in traj.path.glob(f".{field}.npy.*.tmp"):
            stale.unlink(missing_ok=True)
        write_atomic(traj.path / f"{field}.npy", _save_npy(embeddings))
        meta["fields"] = {**meta["fields"], **describe_fields({field: embeddings})}
        meta["embeddings"] = {**(meta.get("embeddings") or {}),
                              out_key: {"identity": backbone.identity, "source": backbone.source, "from": key,
                                        "batch_rows": backbone.batch_rows, "device": backbone.device.type}}
        write_json_atomic(traj.path / META_FILE, meta)
    return True


def embed_buffers(
    data: DataLike,
    backbone: Backbone | str | torch.nn.Module,
    *,
    key: str = "rgb",
    out_key: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed ``obs.<key>`` of every trajectory in ``data`` and store it as ``obs.<out_key>``.

    ``data`` is a buffer directory (or trajectories from :func:`collectors.load_trajectories`);
    ``backbone`` a :class:`Backbone`, a module, or a source string for :func:`load_backbone`.
    Frames go through the backbone ``batch_size`` at a time, a batch spanning trajectory
    boundaries (short episodes would otherwise make small batches); frames are read from the
    memory-mapped files one batch at a time. Every trajectory is checked before any is written.
    Trajectory objects passed in keep their old ``meta``: load the buffer again to read the field.

    Returns ``{"embedded", "skipped", "frames", "seconds", "frames_per_second", "identity",
    "out_key", "dim"}`` (``dim`` is None when nothing was embedded).

    Raises:
        ValueError: a trajectory lacks ``obs.<key>`` or it is not uint8 images, already holds
            ``out_key`` from another backbone (or as a recorded field), or the embeddings are not
            finite in float16; each message names the trajectory.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backbone = load_backbone(backbone)
    out_key = _out_key(key, out_key)
    trajectories = load_buffers(data)
    todo = [t for t in trajectories if _check(t, key, out_key, backbone.identity)]
    total = sum(len(t.obs[key]) for t in todo)

    from tqdm.auto import tqdm

    start = time.perf_counter()
    done: dict[int, list[np.ndarray]] = {}  # index in todo -> embedded chunks so far, in order
    pieces: list[tuple[int, int, int]] = []  # (index in todo, first frame, end frame) of the next batch
    dim: list[int] = []
    raced: list[int] = []  # stored meanwhile by a concurrent run with this backbone: counted as skipped

    def flush() -> None:
        images = np.concatenate([todo[i].obs[key][a:b] for i, a, b in pieces])
        embedded = to_stored(backbone(images))
        if embedded.shape[0] != len(images):
            raise ValueError(f"backbone {backbone.identity} returned {embedded.shape[0]} embeddings for {len(images)} frames")
        row = 0
        for i, a, b in pieces:
            done.setdefault(i, []).append(embedded[row : row + b - a])
            row += b - a
            if b == len(todo[i].obs[key]):  # this trajectory's last frames: write it now
                if not _store(todo[i], key, out_key, backbone, np.concatenate(done.pop(i))):
                    raced.append(i)
                dim[:] = [embedded.shape[1]]
        bar.update(len(images))
        pieces.clear()

    with tqdm(total=total, desc=f"embed {key}->{out_key}", unit="frame", disable=None if progress else True) as bar:  # None: off when not a tty
        room, shape = batch_size, None
        for i, traj in enumerate(todo):
            frames = traj.obs[key]
            if shape is not None and frames.shape[1:] != shape and pieces:
                flush()  # images of another size cannot share a batch
                room = batch_size
            shape = frames.shape[1:]
            offset = 0
            while offset < len(frames):
                take = min(room, len(frames) - offset)
                pieces.append((i, offset, offset + take))
                offset, room = offset + take, room - take
                if room == 0:
                    flush()
                    room = batch_size
        if pieces:
            flush()
    seconds = time.perf_counter() - start
    return {"embedded": len(todo) - len(raced), "skipped": len(trajectories) - len(todo) + len(raced), "frames": total,
            "seconds": seconds, "frames_per_second": total / seconds if total and seconds > 0 else 0.0,
            "identity": backbone.identity, "out_key": out_key, "dim": dim[0] if dim else None}


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Keep the examples' line breaks; defaults are spelled out in each help text instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:" + (__doc__ or "").split("Examples:", 1)[-1].split(">>>", 1)[0].rstrip()
    parser.add_argument("--data", required=True, help="buffer directory written by `rewardswap collect`; trajectories are updated in place")
    parser.add_argument("--backbone", required=True, metavar="SOURCE",
                        help="torchscript:PATH, torchvision:ARCH@WEIGHTS, timm:ARCH@WEIGHTS or rewardswap:CHECKPOINT[#KEY]; "
                             "local files only, nothing is downloaded")
    parser.add_argument("--key", default="rgb", help="image observation key to embed (default: rgb)")
    parser.add_argument("--out-key", default=None,
                        help="observation key the embeddings are stored as (default: KEY_emb); train with --inputs OUT_KEY")
    parser.add_argument("--batch-size", type=int, default=256, help="frames read per backbone call (default: 256)")
    parser.add_argument("--batch-rows", type=int, default=8,
                        help="frames per forward pass, fixed (the last chunk padded) so the wrapper computing embeddings "
                             "online gets the same float16 values; recorded with the embeddings (default: 8)")
    parser.add_argument("--device", default="cpu", help="torch device the backbone runs on, e.g. cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device_problem(device: str) -> str | None:
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        return f"--device {device!r}: {exc}"
    if kind == "cuda" and not torch.cuda.is_available():
        return f"--device {device!r}: CUDA is not available here (a CPU-only torch, or no GPU)"
    return None


def run(args: argparse.Namespace) -> int:
    def error(message: object) -> int:
        print(f"rewardswap embed: error: {message}", file=sys.stderr)
        return 2

    problem = _device_problem(args.device)  # found now, not as an assertion inside torch
    if problem:
        return error(problem)
    try:
        backbone = load_backbone(args.backbone, device=args.device, batch_rows=args.batch_rows)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # RuntimeError: a TorchScript file that is not one
        return error(exc)
    try:
        stats = embed_buffers(args.data, backbone, key=args.key, out_key=args.out_key, batch_size=args.batch_size,
                              progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        return error(exc)
    print(f"embedded {stats['embedded']} trajectories ({stats['skipped']} skipped: already embedded), "
          f"{stats['frames']} frames at {stats['frames_per_second']:.1f} frames/s into obs.{stats['out_key']}"
          + (f" (dim {stats['dim']}, float16)" if stats["dim"] else "")
          + f"\n  backbone {stats['identity']}")
    return 0

