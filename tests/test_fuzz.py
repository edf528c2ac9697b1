"""Seeded fuzzing of what users hand the loaders (issue 18): buffer files, ``meta.json`` and
checkpoints, truncated, bit-flipped, with edited headers, wrong dtypes and types, extra and missing
fields, and pickles that carry a payload.

Every case must either load (trajectories: every array readable and equal to the original;
checkpoints: a working model) or raise the documented error naming the file
(``TrajectoryFormatError`` / ``ValueError``); never another exception, never a hang, never code run.
Flips inside array *data* are out of scope: the format has no checksums, so they load as other
numbers (the flips here hit headers, ``meta.json`` and checkpoints, whose containers are checked).
"""

from __future__ import annotations

import collections
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import collectors
import envs
from collectors import TrajectoryFormatError, load_trajectories
from reward_wrappers import load_reward_model

CASES = 600


class Payload:
    """Unpickling this creates the marker file: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from trainers import fit_classifier

    root = tmp_path_factory.mktemp("fuzz")
    env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16,
                                                  ignore_terminations=True), root / "data")
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.5, seed=e), range(6), seed=0)
    env.close()
    checkpoint = fit_classifier(root / "data", root / "clf.pt", inputs=("state",), epochs=1, progress=False)
    return {"root": root, "trajectory": load_trajectories(root / "data")[0].path, "checkpoint": checkpoint}


def _flip(data: bytes, rng: np.random.Generator, within: int | None = None) -> bytes:
    buf = bytearray(data)
    i = int(rng.integers(0, min(len(buf), within or len(buf))))
    buf[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _npy(header: dict, data: bytes) -> bytes:
    """A version 1.0 ``.npy`` file with this header dict (valid or not) in front of ``data``."""
    text = repr(header)
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1") + data


def _corrupt_npy(path: Path, rng: np.random.Generator, marker: Path) -> str:
    raw = path.read_bytes()
    how = rng.choice(["truncate", "flip_header", "shape", "dtype", "append", "pickle", "empty"])
    if how == "truncate":
        path.write_bytes(raw[: int(rng.integers(0, len(raw)))])
    elif how == "flip_header":
        path.write_bytes(_flip(raw, rng, within=128))
    elif how in ("shape", "dtype"):
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            data = raw[f.tell():]
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape}
        if how == "shape":
            header["shape"] = tuple(int(v) for v in rng.choice([-1, 0, 2, 7, 2**40, 2**62], size=int(rng.integers(1, 4))))
        else:
            header["descr"] = str(rng.choice(["|O", "<f8", "<i2", ">f4", "|b1", "<U3", "<c16"]))
        path.write_bytes(_npy(header, data))
    elif how == "append":
        path.write_bytes(raw + rng.bytes(int(rng.integers(1, 64))))
    elif how == "pickle":
        np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(b"")
    return f"{path.name}:{how}"


def _corrupt_meta(path: Path, rng: np.random.Generator) -> str:
    raw = path.read_text()
    how = rng.choice(["truncate", "flip", "drop_key", "add_key", "retype", "field_entry", "not_object"])
    if how == "truncate":
        path.write_text(raw[: int(rng.integers(0, len(raw)))])
        return f"meta:{how}"
    if how == "flip":
        path.write_bytes(_flip(raw.encode(), rng))
        return f"meta:{how}"
    meta = json.loads(raw)
    keys = sorted(meta)
    odd = [None, -1, 0, 1.5, "x", "", [], {}, True, 2**70, "../../etc"]
    if how == "drop_key":
        meta.pop(keys[int(rng.integers(len(keys)))])
    elif how == "add_key":
        meta[str(rng.choice(["extra", "fields2", "__class__", "obs.x"]))] = odd[int(rng.integers(len(odd)))]
    elif how == "retype":
        meta[keys[int(rng.integers(len(keys)))]] = odd[int(rng.integers(len(odd)))]
    elif how == "field_entry":
        field = sorted(meta["fields"])[int(rng.integers(len(meta["fields"])))]
        choice = int(rng.integers(4))
        if choice == 0:
            meta["fields"][field] = odd[int(rng.integers(len(odd)))]
        elif choice == 1:
            meta["fields"][field]["dtype"] = str(rng.choice(["object", "float64", "nonsense", "V8"]))
        elif choice == 2:
            meta["fields"][field]["shape"] = [int(v) for v in rng.integers(-2, 100, size=2)]
        else:
            meta["fields"][str(rng.choice(["obs.ghost", "info.a/b", "/abs", "obs..x"]))] = meta["fields"][field]
    else:
        meta = [meta]
    path.write_text(json.dumps(meta))
    return f"meta:{how}"


def _corrupt_checkpoint(path: Path, rng: np.random.Generator, marker: Path) -> str:
    how = rng.choice(["truncate", "flip", "pickle", "drop_key", "retype", "tensor"])
    if how == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: int(rng.integers(0, len(raw)))])
    elif how == "flip":
        path.write_bytes(_flip(path.read_bytes(), rng))
    elif how == "pickle":
        payload = torch.load(path, weights_only=True)
        payload["metadata"] = {"x": Payload(marker)}
        with open(path, "wb") as f:
            pickle.dump(payload, f)  # torch.save would refuse nothing either: both are pickles
    else:
        payload = torch.load(path, weights_only=True)
        odd = [None, 3, "x", [], {"name": 5}, -1.0]
        if how == "drop_key":
            payload.pop(sorted(payload)[int(rng.integers(len(payload)))])
        elif how == "retype":
            key = str(rng.choice(["arch", "spec", "version", "format", "metadata", "state_dict"]))
            payload[key] = odd[int(rng.integers(len(odd)))]
        else:
            name = sorted(payload["state_dict"])[int(rng.integers(len(payload["state_dict"])))]
            t = payload["state_dict"][name]
            payload["state_dict"][name] = t.to(torch.float16) if rng.random() < 0.5 else torch.zeros(t.numel() + 1)
        torch.save(payload, path)
    return f"checkpoint:{how}"


def test_corrupted_buffers_and_checkpoints_load_exactly_or_fail_with_the_documented_error(pristine, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    marker = tmp_path / "payload_ran"
    original = load_trajectories(pristine["trajectory"])[0]
    fields = {f"obs.{k}": np.asarray(v) for k, v in original.obs.items()}
    fields.update(actions=np.asarray(original.actions), rewards=np.asarray(original.rewards),
                  labels=np.asarray(original.labels))
    reference = load_reward_model(pristine["checkpoint"])
    batch = {"state": np.zeros((2, *reference.spec.inputs["state"].shape), np.float32)}
    counts: collections.Counter[str] = collections.Counter()
    for case in range(CASES):
        target = rng.random()
        if target < 0.75:
            case_dir = tmp_path / f"case{case}" / pristine["trajectory"].parent.name / pristine["trajectory"].name
            shutil.copytree(pristine["trajectory"], case_dir)
            if target < 0.5:
                npy = sorted(case_dir.glob("*.npy"))[int(rng.integers(len(list(case_dir.glob("*.npy")))))]
                what = _corrupt_npy(npy, rng, marker)
            else:
                what = _corrupt_meta(case_dir / "meta.json", rng)
            try:
                loaded = load_trajectories(case_dir.parent.parent)
                for traj in loaded:
                    got = {f"obs.{k}": np.asarray(v) for k, v in traj.obs.items()}
                    got.update(actions=np.asarray(traj.actions), rewards=np.asarray(traj.rewards), labels=np.asarray(traj.labels))
                    assert got.keys() == fields.keys() and all(np.array_equal(got[k], fields[k]) for k in fields), what
                counts[f"loaded exactly ({'buffer' if loaded else 'buffer, nothing listed'})"] += 1
            except TrajectoryFormatError as exc:
                assert str(case_dir) in str(exc), (what, str(exc))
                counts["refused with TrajectoryFormatError naming the trajectory"] += 1
            shutil.rmtree(tmp_path / f"case{case}")
        else:
            path = tmp_path / f"case{case}.pt"
            shutil.copy(pristine["checkpoint"], path)
            what = _corrupt_checkpoint(path, rng, marker)
            try:
                model = load_reward_model(path)
                model.predict(batch)
                counts["checkpoint loaded and predicts"] += 1
            except ValueError as exc:
                assert str(path) in str(exc), (what, str(exc))
                counts["checkpoint refused with ValueError naming the file"] += 1
            path.unlink()
        assert not marker.exists(), f"case {case} ({what}) ran code from a file"
    print("\nfuzz cases:", dict(counts))
    assert sum(counts.values()) == CASES
    assert counts["refused with TrajectoryFormatError naming the trajectory"] > CASES // 4
