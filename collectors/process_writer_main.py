"""The writer process's side of :mod:`collectors.process_writer`: its ``main`` loop.

A separate module so the child's loop (receive, write on a few threads, report in order, poll
while busy) reads on its own, apart from the parent's bookkeeping; the module docstring of
:mod:`collectors.process_writer` says why there is a writer process and how the two talk.
:class:`~collectors.process_writer.ProcessWriter` starts it with
``python -c "from collectors.process_writer_main import main; ..." FD ROOT [options]``.
"""

from __future__ import annotations

import collections
import mmap
import os
import signal
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from collectors import frames as _frames
from collectors.columns import EpisodeSteps
from collectors.wire import _SPECIAL_BITS, _SPECIAL_MASK, _decode_fields, _recv, _send
from collectors.writer import TrajectoryWriteError, WriteJob, write_trajectory

#: The writer process's sleep between non-blocking checks of its socket while it is busy.
POLL_INTERVAL_S = 0.0005
#: ... and how long it stays idle before it blocks in ``recv`` (see :mod:`collectors.process_writer`).
IDLE_BLOCK_AFTER_S = 0.05
#: Trajectories the writer process writes at once: the disk's waits overlap (two threads wrote
#: ~1.5x the bytes/s of one to this VM's disk with O_DIRECT; four were no better than two).
WRITE_THREADS = 2


class _InOrderWrites:
    """Writes jobs on ``threads`` threads, so one job's disk wait overlaps another's, and hands
    their replies to ``report`` in submission order (the progress word counts a prefix)."""

    def __init__(self, threads: int, report: Callable[[dict[str, Any]], None]) -> None:
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="rewardswap-write")
        self._pending: collections.deque[Future[dict[str, Any]]] = collections.deque()
        self._report = report

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def report_finished(self, *, wait: bool = False) -> None:
        """Report the finished jobs at the front of the queue (``wait``: every job)."""
        pending = self._pending
        while pending and (wait or pending[0].done()):
            self._report(pending.popleft().result())

    def close(self) -> None:
        self.report_finished(wait=True)
        self._pool.shutdown()


def _wait_polling(sock: socket.socket, poll_s: float, give_up_s: float, writes: _InOrderWrites) -> None:
    """Return once ``sock`` has data (or end of file), checking without waiting on it every
    ``poll_s`` and reporting finished writes meanwhile; once nothing is being written and
    ``give_up_s`` passed without a message, return so the caller's blocking ``recv`` waits."""
    deadline = time.monotonic() + give_up_s
    flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
    while True:
        try:
            sock.recv(1, flags)
            return  # data, or b"" at end of file
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return  # let the blocking recv report it
        writes.report_finished()
        if writes.busy:
            deadline = time.monotonic() + give_up_s
        elif time.monotonic() >= deadline:
            return
        time.sleep(poll_s)


def _write_job(root: str, msg: dict[str, Any], blob: bytes, segments: dict[int, np.ndarray], fsync: bool
               ) -> dict[str, Any]:
    ack: dict[str, Any] = {"job": msg["job"]}
    try:
        job = WriteJob(msg["split"], msg["id"], _decode_fields(msg, blob, segments), msg["meta"], cap=msg["cap"],
                       steps=EpisodeSteps(*msg["steps"]) if "steps" in msg else None)
        job.complete()
        path = write_trajectory(root, job.split, job.traj_id, job.fields, job.meta, cap=job.cap, fsync=fsync)
    except Exception as exc:  # reported to the parent, which raises it on its own thread
        ack.update(status="error", type=type(exc).__name__,
                   error=str(exc) if isinstance(exc, TrajectoryWriteError) else f"{type(exc).__name__}: {exc}")
        return ack
    ack.update(status="dropped") if path is None else ack.update(status="ok", path=os.fspath(path))
    return ack


def main(argv: list[str] | None = None) -> int:
    """Writer process: ``main([FD, ROOT, "--fsync"?, "--direct-min-bytes=N"?])`` (FD: a Unix socket).

    Reads segment and job messages until end of file, writes each job and stores its progress,
    answers pings and reports dropped or failed jobs (while the parent listens), exits 0.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not args[0].isdigit():
        print("usage: collectors.process_writer_main.main([FD, ROOT, '--fsync']); ProcessWriter starts it",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent; EOF ends us
    try:
        # SCHED_BATCH: a wake-up (a new episode to write) does not preempt the env loop when they
        # share a core; measured under load, each send otherwise ran a whole write on our core.
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # not Linux, or not allowed: only slower under load
        pass
    sock = socket.socket(fileno=int(args[0]))
    root, fsync = args[1], "--fsync" in args[2:]
    for arg in args[2:]:  # the parent's O_DIRECT threshold (benchmarks change it)
        if arg.startswith("--direct-min-bytes="):
            _frames.DIRECT_MIN_BYTES = float(arg.split("=", 1)[1])  # type: ignore[assignment]
    segments: dict[int, np.ndarray] = {}
    progress: memoryview | None = None
    done = specials = 0
    parent_listens = True

    def tell(reply: dict[str, Any]) -> None:
        nonlocal parent_listens
        if parent_listens:
            try:
                _send(sock, reply)
            except OSError:  # the parent died: keep writing what it sent, nobody to tell
                parent_listens = False

    def finished(ack: dict[str, Any]) -> None:
        nonlocal done, specials
        if ack["status"] != "ok":  # sent before the progress word counts it (see ProcessWriter._reap)
            tell(ack)
            specials += 1
        done = ack["job"] + 1
        if progress is not None:
            progress[0] = (done << _SPECIAL_BITS) | (specials & _SPECIAL_MASK)

    writes = _InOrderWrites(WRITE_THREADS, finished)
    try:
        while True:
            _wait_polling(sock, POLL_INTERVAL_S, IDLE_BLOCK_AFTER_S, writes)
            received = _recv(sock)
            if received is None:
                break
            msg, blob, fds = received
            for seg_id in msg.get("forget", ()):
                segments.pop(seg_id, None)
            if "segment" in msg or "progress" in msg:
                try:
                    mapped = mmap.mmap(fds[0], msg.get("size", msg.get("progress")))
                finally:
                    for fd in fds:
                        os.close(fd)
                if "segment" in msg:
                    segments[msg["segment"]] = np.frombuffer(mapped, np.uint8)
                else:
                    progress = memoryview(mapped).cast("Q")
            if "job" in msg:  # the segments as of now: a later "forget" must not reach a queued job
                writes.submit(_write_job, root, msg, blob, dict(segments), fsync)
            if "ping" in msg:
                writes.report_finished(wait=True)  # a pong promises everything before it is done
                tell({"pong": msg["ping"]})
    finally:
        writes.close()  # end of file: write everything received, then exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
