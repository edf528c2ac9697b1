"""Write trajectories in a separate writer process fed through shared memory.

Why a process: on the project's 2-core VM a writer *thread* cost the env loop 25-31 % of its
steps/s even when writing to tmpfs, while a separate process doing the same work on the other
core cost 0-13 %. The thread's cost is contention inside one interpreter (GIL hand-offs and the
Python work of writing: headers, JSON, mkdir/rename, cap counting), not the disk. So the writing
leaves the process, and the frames do not travel: they are already in shared memory.

How it works:

* **Buffers in shared memory.** The recorder's per-episode :class:`~collectors.frames.FrameBuffer`
  s are allocated by :meth:`ProcessWriter.new_buffer` in ``memfd_create`` memory: anonymous (it
  never has a name under ``/dev/shm``), handed to the writer process as a file descriptor over a
  Unix socket (``SCM_RIGHTS``) once per buffer, and freed by the kernel when the last process
  mapping it unmaps it or dies. Nothing can leak, whichever process dies first.
* **One small message per episode.** At episode end the recorder sends the segment ids and
  lengths, ``meta`` and the per-step scalars (:class:`~collectors.columns.EpisodeSteps`, as
  Python floats and bools: the writer process builds their columns) as one framed
  :mod:`marshal` message: builtin types only (marshal cannot rebuild arbitrary objects, unlike
  pickle), and ~2 us to encode where JSON took ~11 us of the env thread's time. The
  writer process writes the trajectory with :func:`~collectors.writer.write_trajectory` (temp
  dir, atomic rename, caps under the lock, errors cleaned up) on one of ``WRITE_THREADS``
  threads, then stores its progress (jobs done in submission order, special replies sent) in
  one shared 8-byte word. The recorder reads that word at each
  episode end, a memory read instead of a syscall, and reuses the buffers of finished jobs; only
  a dropped (cap) or failed job sends a reply over the socket, and ``flush`` sends a ping that
  the writer answers in order.
* **The writer polls while busy, and blocks only when idle.** A send that wakes a receiver
  blocked in ``recv`` cost the sender ~18 us here (the wake-up is charged to the env's thread),
  one to a receiver that is not waiting ~3 us. So between messages the writer checks the socket
  every ``POLL_INTERVAL_S`` without waiting on it, and blocks only after ``IDLE_BLOCK_AFTER_S``
  with nothing to do (a slow env, or no episodes): a wake-up per episode is then negligible.
* **Started with** ``subprocess.Popen([sys.executable, "-c", "...process_writer_main import main..."])``,
  not ``multiprocessing``: SB3's SubprocVecEnv workers are daemonic and may not have
  multiprocessing children. It ignores SIGINT (a Ctrl-C must not kill it mid-write; the parent's
  ``close()`` or exit ends it). On end of file (parent closed or died) it writes every episode it
  had already received (their memory is still mapped in the writer), then exits.
* **Errors.** A failed write comes back as an error reply and is raised as
  :class:`~collectors.writer.TrajectoryWriteError` at the next ``reset``/``flush``/``close``. If the
  writer process itself dies, the episodes it had not acknowledged are written in this process
  (their memory is still mapped here) with a ``RuntimeWarning``, and later ones go to a writer
  thread: nothing is lost.

This module is the parent's side. The writer process's loop is :mod:`collectors.process_writer_main`,
and what the two send each other (framing, a job's fields, the progress word) :mod:`collectors.wire`.

>>> import tempfile, numpy as np
>>> root = tempfile.mkdtemp()
>>> w = ProcessWriter(root)
>>> frames = w.new_buffer((2,), np.dtype(np.float32), capacity=4)
>>> for t in range(3):
...     frames.append(np.full(2, t, np.float32))
>>> w.submit(WriteJob("negative", new_trajectory_id(), {"obs.state": frames, "actions": np.zeros((2, 1)),
...     "rewards": np.zeros(2), "labels": np.zeros(3, np.float32), "terminated": np.zeros(2, bool),
...     "truncated": np.array([False, True])}, {"success": False}))
>>> w.close(); w.stats.written["negative"], np.load(w.stats.paths[0] / "obs.state.npy")[:, 0].tolist()
(1, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import itertools
import mmap
import os
import socket
import subprocess
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from collectors import frames as _frames
from collectors.frames import FrameBuffer
from collectors.wire import _SPECIAL_BITS, _SPECIAL_MASK, _encode_fields, _read_frames, _Segment, _send
from collectors.writer import (
    TrajectoryWriteError,
    TrajectoryWriter,
    WriteJob,
    WriteStats,
    new_trajectory_id,  # noqa: F401 (the module docstring example uses it)
    remove_stale_tmp,
    take_first_error,
)

# Importable from here before the writer process's loop, the wire protocol and the per-step
# columns had modules of their own (tests and callers use some of these names).
from collectors.atomic import json_default  # noqa: F401
from collectors.columns import Column, EpisodeSteps  # noqa: F401
from collectors.process_writer_main import (  # noqa: F401
    IDLE_BLOCK_AFTER_S,
    POLL_INTERVAL_S,
    WRITE_THREADS,
    _InOrderWrites,
    _wait_polling,
    _write_job,
    main,
)
from collectors.wire import _HEADER, _encode, _recv, _recv_exact  # noqa: F401
from collectors.wire import _decode_fields as _fields  # noqa: F401
from collectors.writer import write_trajectory  # noqa: F401

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
#: Live writers, so a fork can detach the child's copies (see _after_fork_in_child).
_LIVE: "weakref.WeakSet[ProcessWriter]" = weakref.WeakSet()


def process_writer_available() -> str | None:
    """None if a :class:`ProcessWriter` can run here, else why not (used to fall back to a thread)."""
    if not hasattr(os, "memfd_create"):
        return "os.memfd_create is missing (Linux only)"
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket.socket, "sendmsg"):
        return "Unix sockets with sendmsg are missing"
    if not sys.executable:
        return "sys.executable is empty (embedded interpreter): no Python to start"
    return None


def _shutdown(sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    """Finalizer: closing our end is the writer's signal to finish what it has and exit."""
    try:
        sock.close()
    except OSError:
        pass
    proc.poll()  # reap it if it is already gone; never block here (GC, interpreter exit)


class ProcessWriter:
    """Writes :class:`~collectors.writer.WriteJob` s in a child process; see the module docstring.

    The same interface as :class:`~collectors.writer.TrajectoryWriter` with ``async_write=True``:
    ``submit`` returns at once (blocking only when ``max_pending`` episodes are unacknowledged, so
    a slow disk slows the env instead of exhausting memory), ``flush``/``close`` wait, and an error
    is raised by the next ``submit``, ``flush``, ``close`` or ``raise_pending_error``. Buffers from
    :meth:`new_buffer` are written without a copy; other fields travel inline in the message.

    Raises ``OSError`` if the process cannot be started (the recorder then uses a thread).
    """

    async_write = True

    def __init__(self, root: str | os.PathLike[str], *, max_pending: int = 16, fsync: bool = False) -> None:
        why = process_writer_available()
        if why is not None:
            raise OSError(f"cannot write in a separate process: {why}")
        self.root = Path(root)
        self.fsync = fsync
        self.max_pending = max(1, int(max_pending))
        self._stats = WriteStats()
        self._new_paths: list[tuple[str, str]] = []  # (split, id) written, not yet in stats.paths
        self._errors: list[BaseException] = []
        self._inflight: dict[int, WriteJob] = {}
        self._seq = itertools.count()
        self._seg_ids = itertools.count()
        self._retired: list[int] = []  # segments freed here, to unmap in the writer too
        self._rbuf = bytearray()
        self._fallback: TrajectoryWriter | None = None
        self._closed = False
        self._eof = False  # the writer closed its end: it has exited or is about to
        self._forked = False
        self._specials_seen = 0
        self._ping = self._pong = 0
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
        # -c, not -m: the package __init__ imports that module (through this one), and -m would
        # run it a second time.
        cmd = [sys.executable, "-c", "import sys; from collectors.process_writer_main import main; sys.exit(main())",
               str(theirs.fileno()), os.fspath(self.root), f"--direct-min-bytes={_frames.DIRECT_MIN_BYTES}"]
        try:
            self._proc = subprocess.Popen(cmd + (["--fsync"] if fsync else []), pass_fds=(theirs.fileno(),),
                                          stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._finalizer = weakref.finalize(self, _shutdown, ours, self._proc)
        _LIVE.add(self)
        # Progress in shared memory: finished jobs are released without a syscall per episode.
        fd = os.memfd_create("rewardswap-progress", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, mmap.PAGESIZE)
            self._progress_mm = mmap.mmap(fd, mmap.PAGESIZE)
            self._send({"progress": mmap.PAGESIZE}, fds=[fd])
        finally:
            os.close(fd)
        # A memoryview, not a numpy array: reading it is ~4x cheaper, and it is read every episode.
        self._progress = memoryview(self._progress_mm).cast("Q")

    # ------------------------------------------------------------------ interface
    @property
    def kind(self) -> str:
        """``"process"``, or ``"thread"`` once the writer process was lost and a thread took over."""
        return "process" if self._fallback is None else "thread"

    @property
    def stats(self) -> WriteStats:
        """What was written so far (the writer's progress is read first, without waiting)."""
        self._reap()
        if self._new_paths:
            self._stats.paths.extend(self.root / split / traj_id for split, traj_id in self._new_paths)
            self._new_paths.clear()
        return self._stats

    @property
    def pid(self) -> int:
        """The writer process's pid."""
        return self._proc.pid

    def new_buffer(self, shape: tuple[int, ...], dtype: np.dtype, capacity: int) -> FrameBuffer:
        """A frame buffer in memory shared with the writer process (private once it is gone)."""
        return FrameBuffer(shape, dtype, capacity, alloc=None if self._fallback is not None else self._allocate)

    def submit(self, job: WriteJob) -> None:
        """Hand ``job`` to the writer process; its buffers are released once it is on disk."""
        self._check_usable()
        self.raise_pending_error()
        if self._closed:
            raise RuntimeError("ProcessWriter is closed")
        if self._fallback is not None:
            self._fallback.submit(job)
            return
        # Shared frame buffers travel as segment ids, other fields inline (see collectors.wire).
        fields, blobs, nbytes = _encode_fields(job.fields)
        seq = next(self._seq)
        msg = {"job": seq, "split": job.split, "id": job.traj_id, "cap": job.cap, "meta": job.meta, "fields": fields}
        if job.steps is not None:  # the writer process builds their columns (see EpisodeSteps)
            msg["steps"] = job.steps.builtins()
            nbytes += job.steps.nbytes
        job.nbytes = nbytes
        self._inflight[seq] = job
        self._send(msg, blobs)
        self._reap()
        if len(self._inflight) >= self.max_pending:
            self._sync()  # a slow disk slows the env down instead of filling memory

    def flush(self) -> None:
        """Wait until every submitted job is on disk; raise the first error."""
        self._check_usable()
        self._reap()  # often all done already: no ping, so no wait for a polling writer to see it
        if self._inflight:
            self._sync()
        if self._fallback is not None:
            self._fallback.flush()
        self.raise_pending_error()

    def close(self) -> None:
        """Flush, let the writer process exit, free the shared memory. Safe to call twice."""
        if self._forked:
            self._closed = True
            return
        if self._closed:
            self.raise_pending_error()
            return
        self._closed = True
        try:
            if self._fallback is None:
                try:
                    self._sock.shutdown(socket.SHUT_WR)  # end of file: write what you have, then exit
                except OSError:
                    pass
                while self._fallback is None and not self._eof:
                    self._poll(block=True)
                if self._fallback is None:
                    try:
                        self._proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:  # acknowledged everything, then hung: not ours to wait for
                        self._proc.kill()
                        self._proc.wait()
            if self._fallback is not None:
                self._fallback.close()
        finally:
            self._finalizer()
            self._progress.release()  # first: mmap.close refuses while a view exists
            self._progress = memoryview(bytearray(8)).cast("Q")
            self._progress_mm.close()
        self.raise_pending_error()

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet acknowledged as written."""
        self._reap()
        return len(self._inflight) + (self._fallback.pending if self._fallback is not None else 0)

    def note_dropped(self, split: str) -> None:
        """Count an episode the caller did not submit because ``split`` is full."""
        self._stats.dropped_full[split] += 1

    def raise_pending_error(self) -> None:
        """Raise the first error among the acknowledgements read so far, if any.

        Reads nothing itself (the recorder calls this at every reset): the writer's progress is
        read at each ``submit``, so an error surfaces an episode or two later, and at
        ``flush``/``close``.
        """
        if self._errors:
            raise take_first_error(self._errors)
        if self._fallback is not None:
            self._fallback.raise_pending_error()

    # ------------------------------------------------------------------ internals
    def _check_usable(self) -> None:
        if self._forked:
            raise RuntimeError(
                "this TrajectoryRecorder's writer belongs to the process that created it, and this is a forked "
                "copy; create the recorder in the process that steps the env (e.g. SB3 make_vec_env(..., "
                "wrapper_class=TrajectoryRecorder) or an env factory for gymnasium's AsyncVectorEnv)")

    def _allocate(self, nbytes: int) -> tuple[np.ndarray, _Segment]:
        fd = os.memfd_create("rewardswap-frames", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, nbytes)
            seg = _Segment(next(self._seg_ids), mmap.mmap(fd, nbytes))
            self._send({"segment": seg.id, "size": nbytes}, fds=[fd])
        finally:
            os.close(fd)  # the mapping (and the writer's copy) keep the memory alive
        weakref.finalize(seg, self._retired.append, seg.id).atexit = False
        return np.frombuffer(seg.mm, np.uint8), seg

    def _send(self, msg: dict[str, Any], blobs: Sequence[bytes] = (), fds: Sequence[int] = ()) -> None:
        if self._fallback is not None:
            return
        if self._retired:
            n = len(self._retired)
            msg["forget"], self._retired[:n] = self._retired[:n], []
        try:
            _send(self._sock, msg, blobs, fds)
        except OSError:  # EPIPE, ECONNRESET: the writer process is gone
            self._lost()

    def _reap(self) -> None:
        """Release the jobs the writer has finished: one shared-memory read, a syscall only when
        a job was dropped (cap) or failed (its acknowledgement waits on the socket)."""
        if self._fallback is not None or self._forked:
            return
        word = self._progress[0]
        if word & _SPECIAL_MASK != self._specials_seen:
            self._specials_seen = word & _SPECIAL_MASK
            self._poll(block=False)  # the writer sent those before it stored the word
        self._pop_done(word >> _SPECIAL_BITS)

    def _pop_done(self, done: int | None = None) -> None:
        """Count the jobs before ``done`` (default: the progress word's count) as written."""
        if done is None:
            done = self._progress[0] >> _SPECIAL_BITS
        inflight = self._inflight
        while inflight:
            seq = next(iter(inflight))
            if seq >= done:
                return
            job = inflight.pop(seq)
            stats = self._stats
            stats.written[job.split] += 1
            stats.frames += job.frames
            stats.bytes += job.nbytes  # counted in submit
            self._new_paths.append((job.split, job.traj_id))  # Paths when stats are read: not on the env's thread
            if job.release is not None:  # last: the buffers may be refilled from here on
                job.release()

    def _sync(self) -> None:
        """Block until the writer has handled everything sent so far (a ping it answers in order)."""
        if self._fallback is not None:
            return
        self._ping += 1
        self._send({"ping": self._ping})
        while self._fallback is None and not self._eof and self._pong < self._ping:
            self._poll(block=True)
        self._reap()

    def _poll(self, *, block: bool) -> None:
        """Read acknowledgements: all that are waiting, or (``block``) at least one read's worth."""
        if self._fallback is not None or self._eof or self._forked:
            return
        while True:
            try:
                data = self._sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._eof = True
                self._pop_done()  # the writer exited: its last progress word is final
                if self._inflight or not self._closed:
                    self._lost()
                return
            self._rbuf += data
            self._handle_acks()
            if block:
                return

    def _handle_acks(self) -> None:
        for ack in _read_frames(self._rbuf):
            if "pong" in ack:
                self._pong = max(self._pong, ack["pong"])
                continue
            job = self._inflight.pop(ack["job"])
            if job.release is not None:
                job.release()
            status = ack["status"]
            if status == "dropped":
                self._stats.dropped_full[job.split] += 1
            else:
                exc_type = {"ValueError": ValueError, "TypeError": TypeError}.get(ack.get("type", ""), TrajectoryWriteError)
                self._errors.append(exc_type(ack["error"]))

    def _lost(self) -> None:
        """The writer process is gone: write what it had not acknowledged here, then use a thread."""
        if self._fallback is not None:
            return
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its socket broke but it lives on: stop it
            self._proc.kill()
            code = self._proc.wait()
        remove_stale_tmp(self.root)  # the temp dir of the write it died in, if any
        self._fallback = TrajectoryWriter(self.root, async_write=not self._closed, fsync=self.fsync)
        self._fallback.stats = self._stats
        jobs = list(self._inflight.values())
        self._inflight.clear()
        if jobs or not self._closed:
            warnings.warn(
                f"the trajectory writer process (pid {self._proc.pid}) exited with code {code}; writing the "
                f"{len(jobs)} episode(s) it had not confirmed in this process, and later ones on a thread. "
                f"Its error output above says why it stopped.", RuntimeWarning, stacklevel=3)
        for job in jobs:
            if (self.root / job.split / job.traj_id).is_dir():  # written, the acknowledgement lost
                self._stats.written[job.split] += 1
                self._stats.paths.append(self.root / job.split / job.traj_id)
                if job.release is not None:
                    job.release()
            else:
                self._fallback.submit(job)

    def _after_fork_in_child(self) -> None:
        # The socket and process belong to the parent. Closing our copy of the socket matters: a
        # forked child holding it would keep the writer from seeing end of file when the parent dies.
        self._forked = True
        self._finalizer.detach()
        try:
            self._sock.close()
        except OSError:
            pass


def _after_fork_in_child() -> None:
    for writer in list(_LIVE):
        writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_writer(root: str | os.PathLike[str], async_write: bool | str, *, fsync: bool = False
                ) -> TrajectoryWriter | ProcessWriter:
    """The writer for ``TrajectoryRecorder(async_write=...)``.

    ``False``/``"sync"``: write on the caller's thread. ``"thread"``: a background thread.
    ``"process"``: a writer process (raises ``OSError`` if one cannot be started). ``True``: a
    process where possible, else a thread (with a ``RuntimeWarning`` saying why).
    """
    mode = "auto" if async_write is True else "sync" if async_write is False else async_write
    if mode not in ("sync", "thread", "process", "auto"):
        raise ValueError(f"async_write must be False, True, 'sync', 'thread' or 'process', got {async_write!r}")
    if mode == "sync":
        return TrajectoryWriter(root, async_write=False, fsync=fsync)
    if mode == "thread":
        return TrajectoryWriter(root, async_write=True, fsync=fsync)
    try:
        return ProcessWriter(root, fsync=fsync)
    except OSError as exc:
        if mode == "process":
            raise
        warnings.warn(f"TrajectoryRecorder: {exc}; writing on a background thread instead (slower)",
                      RuntimeWarning, stacklevel=3)
        return TrajectoryWriter(root, async_write=True, fsync=fsync)


if __name__ == "__main__":  # the writer process's loop, as before it had its own module
    sys.exit(main())
