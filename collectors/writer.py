"""Write finished trajectories to disk atomically, on the caller's thread or a background one.

(:mod:`collectors.process_writer` writes them in a separate process instead; the fastest
option, and what ``TrajectoryRecorder(async_write=True)`` uses where it can.)

A trajectory is built in ``out_dir/.tmp/<pid>-<id>/`` and becomes visible with one
``os.rename`` into ``out_dir/<split>/<id>/``: a reader never sees half a trajectory, even when
the writing process is killed. Ids carry a nanosecond clock, the pid and random bits, so
several processes (e.g. SubprocVecEnv workers) can share one ``out_dir``. Caps are checked
under an ``flock`` on ``out_dir/.lock`` against what is on disk, so they hold across processes
and restarts (those ids, the lock and the cleanup of dead writers' temps: :mod:`collectors.root`;
the per-step columns a writer builds: :mod:`collectors.columns`).

>>> import tempfile, numpy as np
>>> root = tempfile.mkdtemp()
>>> fields = {"obs.state": np.zeros((3, 2), np.float32), "actions": np.zeros((2, 1), np.float32),
...           "rewards": np.zeros(2), "labels": np.zeros(3, np.float32),
...           "terminated": np.zeros(2, bool), "truncated": np.array([False, True])}
>>> path = write_trajectory(root, "negative", new_trajectory_id(), fields, {"env_id": None, "success": False})
>>> sorted(p.name for p in path.iterdir())[:3], count_trajectories(root, "negative")
(['actions.npy', 'labels.npy', 'meta.json'], 1)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from collectors.atomic import json_default
from collectors.columns import _ITEMSIZE, Column, EpisodeSteps  # noqa: F401 (_ITEMSIZE: re-exported)
from collectors.format import FORMAT_NAME, FORMAT_VERSION, META_FILE, SPLITS, TMP_DIR, per_frame
from collectors.frames import FrameBuffer, npy_header, write_frames
from collectors.root import _fsync_dir, _ProcessToken, _root_lock, count_trajectories
from collectors.root import (  # noqa: F401 (re-exported: importable from here before root.py existed)
    LOCK_FILE,
    _pid_alive,
    new_trajectory_id,
    prepare_root,
    remove_stale_tmp,
)


class TrajectoryWriteError(RuntimeError):
    """Writing a trajectory failed; nothing of it was left in the buffer."""


def take_first_error(errors: list[BaseException]) -> BaseException:
    """Empty ``errors`` (write errors collected off the caller's thread) into one to raise: the
    first, naming how many more write failures followed it."""
    first, n = errors[0], len(errors)
    errors.clear()
    if n > 1 and isinstance(first, TrajectoryWriteError):
        combined = TrajectoryWriteError(f"{first} (and {n - 1} more failed writes)")
        combined.__cause__ = first.__cause__
        return combined
    return first


def describe_fields(fields: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``{field: {"shape": [...], "dtype": "<f4"}}`` as stored in ``meta.json`` (numpy's descr)."""
    return {name: {"shape": list(arr.shape), "dtype": arr.dtype.str} for name, arr in fields.items()}


def write_trajectory(
    root: str | os.PathLike[str],
    split: str,
    traj_id: str,
    fields: Mapping[str, np.ndarray | FrameBuffer | Column],
    meta: Mapping[str, Any],
    *,
    cap: int | None = None,
    fsync: bool = False,
) -> Path | None:
    """Write one trajectory atomically; return its directory, or None when ``split`` is full.

    ``fields`` maps file stems (``"obs.rgb"``, ``"actions"``, ...) to arrays (or
    :class:`~collectors.frames.FrameBuffer` s, written without a copy, or :class:`Column` s); per-frame fields
    must have one more entry than per-step ones. ``meta`` is completed with the format name and
    version, id, split, length and per-field shape/dtype. With ``cap``, the trajectory is
    dropped if ``split`` already holds ``cap`` trajectories (counted on disk under a lock).
    ``fsync=True`` also survives power loss, not only a killed process (slower).

    Raises :class:`TrajectoryWriteError` (and removes the temp dir) if anything fails.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if "success" not in meta:
        raise ValueError("meta must say whether the trajectory succeeded: meta['success']")
    root = Path(root)
    arrays = {name: (v.view() if isinstance(v, FrameBuffer) else v.array() if isinstance(v, Column) else np.asarray(v))
              for name, v in fields.items()}
    length = len(arrays["actions"])
    for name, arr in arrays.items():
        want = length + 1 if per_frame(name) else length
        if len(arr) != want:
            raise ValueError(f"field {name!r} has {len(arr)} entries, expected {want} (T={length})")
        if arr.dtype.hasobject:
            raise TypeError(f"field {name!r} has dtype object; the format stores plain arrays only")
    tmp_dir = root / TMP_DIR / f"{_ProcessToken.pid}-{traj_id}"
    final_dir = root / split / traj_id
    # os-level calls and a hand-built .npy header: this runs once per episode, and on the
    # async path every microsecond of Python here is GIL time taken from the env loop.
    tmp = os.fspath(tmp_dir)
    try:
        try:
            os.mkdir(tmp)
        except FileNotFoundError:  # .tmp/ (or the root) was removed under us: recreate it
            os.makedirs(tmp)
        for name, value in fields.items():
            file_path = os.path.join(tmp, name + ".npy")
            if isinstance(value, FrameBuffer):
                write_frames(file_path, value, fsync=fsync)
                continue
            _write_npy(file_path, arrays[name], fsync=fsync)
        full_meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "id": traj_id,
            "split": split,
            "length": length,
            **meta,
            "fields": describe_fields(arrays),
        }
        # json.dumps without indent uses the C encoder (json.dump and indent= do not).
        meta_bytes = json.dumps(full_meta, default=json_default).encode()
        _write_file(os.path.join(tmp, META_FILE), meta_bytes, fsync=fsync)
        if fsync:
            _fsync_dir(tmp_dir)
        # rename(2) is atomic and refuses a non-empty target, so an id collision cannot
        # overwrite a trajectory: it fails loudly instead. The lock only serialises cap checks.
        with _root_lock(root) if cap is not None else contextlib.nullcontext():
            if cap is not None and count_trajectories(root, split) >= cap:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                return None
            try:
                os.rename(tmp, final_dir)
            except FileNotFoundError:  # the split dir was removed under us
                (root / split).mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final_dir)
        if fsync:
            _fsync_dir(root / split)
        return final_dir
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        hint = ""
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            hint = " (disk full)"
        elif isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            hint = " (a trajectory with this id already exists)"
        raise TrajectoryWriteError(
            f"could not write trajectory {traj_id} to {final_dir}{hint}: {type(exc).__name__}: {exc}; "
            f"no partial trajectory was left"
        ) from exc


def _write_file(path: str, data: bytes | memoryview, *, fsync: bool = False) -> None:
    # os.open/os.write: 3 syscalls, where io.open adds fstat/ioctl/lseek.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path: str, arr: np.ndarray, *, fsync: bool = False) -> None:
    """``np.save(path, arr)`` (format 1.0, what np.load reads) without numpy's Python overhead."""
    arr = np.ascontiguousarray(arr)
    _write_file(path, npy_header(arr.dtype, arr.shape) + arr.tobytes(), fsync=fsync)


@dataclass
class WriteJob:
    """One finished episode waiting to be written."""

    split: str
    traj_id: str
    fields: dict[str, np.ndarray | FrameBuffer | Column]
    meta: dict[str, Any]
    cap: int | None = None
    #: called (on the writer's thread) once the fields' memory is no longer needed
    release: Callable[[], None] | None = None
    #: bytes of field data, counted by the process writer when it sends the job
    nbytes: int = 0
    #: the per-step columns, still to be built by the writer (see :meth:`complete`)
    steps: EpisodeSteps | None = None

    @property
    def frames(self) -> int:
        """Observations in the episode (T + 1)."""
        return len(self.steps) + 1 if self.steps is not None else len(self.fields["labels"])

    def complete(self) -> None:
        """Build ``steps`` into ``fields`` and ``meta`` (in place), ready for :func:`write_trajectory`.

        ``meta`` entries given by the caller win over the steps' summary, as they always did.
        """
        if self.steps is not None:
            self.fields.update(self.steps.columns())
            self.meta = {**self.steps.summary(), **self.meta}
            self.steps = None


@dataclass
class WriteStats:
    """What a :class:`TrajectoryWriter` has done so far."""

    written: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    dropped_full: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    frames: int = 0
    bytes: int = 0
    paths: list[Path] = field(default_factory=list)


class TrajectoryWriter:
    """Writes :class:`WriteJob` s now (``async_write=False``) or on one background thread.

    In async mode at most ``max_pending`` jobs wait in memory; ``submit`` blocks beyond that so
    a slow disk slows the env down instead of exhausting memory. An error on the thread is
    raised by the next ``submit``, ``flush`` or ``close`` on the caller's thread.
    """

    def __init__(self, root: str | os.PathLike[str], *, async_write: bool = False, max_pending: int = 16,
                 fsync: bool = False) -> None:
        self.root = Path(root)
        self.async_write = async_write
        self.fsync = fsync
        self.stats = WriteStats()
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._queue: queue.Queue[WriteJob | None] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        if async_write:
            self._queue = queue.Queue(maxsize=max_pending)
            # Daemon so a forgotten close() cannot hang interpreter exit; callers flush via close().
            self._thread = threading.Thread(target=self._run, name=f"TrajectoryWriter({self.root})", daemon=True)
            self._thread.start()

    @property
    def kind(self) -> str:
        """``"sync"`` or ``"thread"`` (:class:`~collectors.process_writer.ProcessWriter` says ``"process"``)."""
        return "thread" if self.async_write else "sync"

    def new_buffer(self, shape: tuple[int, ...], dtype: np.dtype, capacity: int) -> FrameBuffer:
        """A frame buffer this writer can write (private memory; the process writer shares it)."""
        return FrameBuffer(shape, dtype, capacity)

    def submit(self, job: WriteJob) -> None:
        """Write ``job`` now, or queue it for the background thread."""
        self.raise_pending_error()
        if self._closed:
            raise RuntimeError("TrajectoryWriter is closed")
        if self._queue is None:
            self._write(job)
        else:
            self._queue.put(job)

    def flush(self) -> None:
        """Wait until every queued job is on disk; raise the first error the thread hit."""
        if self._queue is not None:
            self._queue.join()
        self.raise_pending_error()

    def close(self) -> None:
        """Flush, then stop the thread. Safe to call twice."""
        if self._closed:
            self.raise_pending_error()
            return
        self._closed = True
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self.raise_pending_error()

    @property
    def pending(self) -> int:
        """Jobs queued and not yet written."""
        return self._queue.unfinished_tasks if self._queue is not None else 0

    def note_dropped(self, split: str) -> None:
        """Count an episode the caller did not submit because ``split`` is full."""
        with self._lock:
            self.stats.dropped_full[split] += 1

    def raise_pending_error(self) -> None:
        with self._lock:
            if not self._errors:
                return
            error = take_first_error(self._errors)
        raise error

    def _write(self, job: WriteJob) -> None:
        try:
            job.complete()
            path = write_trajectory(self.root, job.split, job.traj_id, job.fields, job.meta, cap=job.cap,
                                    fsync=self.fsync)
        finally:
            if job.release is not None:
                job.release()
        with self._lock:
            if path is None:
                self.stats.dropped_full[job.split] += 1
                return
            self.stats.written[job.split] += 1
            self.stats.frames += job.frames
            self.stats.bytes += sum((v.view() if isinstance(v, FrameBuffer) else v).nbytes for v in job.fields.values())
            self.stats.paths.append(path)

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._write(job)
            except BaseException as exc:  # surfaced on the caller's thread
                with self._lock:
                    self._errors.append(exc)
            finally:
                self._queue.task_done()
