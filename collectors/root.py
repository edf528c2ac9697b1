"""Housekeeping of an output root shared by many writers: ids, directories, stale temps, the lock.

Several processes (e.g. SubprocVecEnv workers, each with its own writer) may write into one
``out_dir`` at once, and any of them may be killed mid-write. So ids carry a nanosecond clock,
the pid and random bits (unique without coordination); a temp trajectory is named after the pid
that writes it (a later run can tell a dead writer's leftovers from a live one's work); and cap
checks count what is on disk under an ``flock`` on ``out_dir/.lock`` (caps hold across processes
and restarts). :func:`~collectors.writer.write_trajectory` uses all of them.

>>> import tempfile
>>> root = prepare_root(tempfile.mkdtemp())
>>> sorted(p.name for p in root.iterdir()), count_trajectories(root, "positive"), remove_stale_tmp(root)
(['.tmp', 'negative', 'positive'], 0, 0)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

from collectors.format import SPLITS, TMP_DIR

try:  # POSIX only; elsewhere caps are best-effort across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class _ProcessToken:
    """pid and a random token of this process, refreshed after fork (syscalls are dear here)."""

    pid = os.getpid()
    token = secrets.token_hex(3)
    counter = itertools.count()

    @classmethod
    def refresh(cls) -> None:
        cls.pid, cls.token, cls.counter = os.getpid(), secrets.token_hex(3), itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ProcessToken.refresh)


def new_trajectory_id() -> str:
    """A sortable id unique across processes: ``<ns clock>-<pid>-<process token><counter>``.

    The pid separates live processes, the random token separates a process from an earlier one
    that had the same pid, and the counter separates ids made in the same nanosecond.
    """
    t = _ProcessToken
    return f"{time.time_ns():020d}-{t.pid}-{t.token}{next(t.counter):04d}"


def prepare_root(root: str | os.PathLike[str]) -> Path:
    """Create ``root`` with its split and temp directories; return it as a Path."""
    root = Path(root)
    for sub in (*SPLITS, TMP_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def count_trajectories(root: str | os.PathLike[str], split: str) -> int:
    """Number of complete trajectories in ``root/split`` (temp and hidden entries excluded)."""
    split_dir = Path(root) / split
    try:
        with os.scandir(split_dir) as it:
            return sum(1 for e in it if not e.name.startswith(".") and e.is_dir())
    except FileNotFoundError:
        return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a zombie (dead, not yet reaped: e.g. an orphaned writer process) writes nothing more
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_tmp(root: str | os.PathLike[str]) -> int:
    """Delete temp trajectories left by writers that died (their pid is gone); return how many.

    Temp dirs of live processes are left alone: another worker may be writing into them.
    """
    tmp = Path(root) / TMP_DIR
    removed = 0
    if not tmp.is_dir():
        return 0
    for entry in tmp.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: a directory (locked through its own descriptor, nothing
    added to it) or a lock file (created if missing). Closing the descriptor releases it."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _root_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive_lock(root / LOCK_FILE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
