"""Per-episode frame buffers that double as ready-to-write ``.npy`` files.

Writing an episode of images is the recorder's main cost. Measured on the project's 2-core VM,
a buffered ``write()`` of 627 KB (51 frames of 64x64x3) costs ~1.5 ms of CPU: the kernel copies
into freshly allocated page-cache pages. The same write with ``O_DIRECT`` costs ~0.03 ms of CPU
(the device reads our memory), and sleeps without the GIL for the rest. ``O_DIRECT`` needs the
memory, the file offset and the length aligned to the block size, so a :class:`FrameBuffer`
keeps its frames in page-aligned memory with a 4096-byte slot in front for the ``.npy`` header
and slack behind for the padded tail: one ``write()`` stores the whole file, no copy.

The files are ordinary ``.npy`` files (format 1.0 with a 4096-byte header, which ``np.load``
reads like any other; data starts page-aligned, which suits ``mmap``). Where ``O_DIRECT`` is
missing or refused (tmpfs, macOS, some network file systems) the same bytes are written
buffered.

>>> import numpy as np, tempfile, os
>>> buf = FrameBuffer((2, 2), np.dtype(np.uint8), capacity=1)
>>> for i in range(3):
...     buf.append(np.full((2, 2), i, np.uint8))
>>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
>>> write_frames(path, buf)
>>> np.load(path).tolist() == buf.view().tolist(), np.load(path).shape
(True, (3, 2, 2))
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable

import numpy as np

ALIGN = 4096
HEADER_BYTES = 4096
#: Below this many bytes a buffered write is as cheap as a direct one.
DIRECT_MIN_BYTES = 64 * 1024
NPY_MAGIC = b"\x93NUMPY\x01\x00"

# st_dev of file systems that refused O_DIRECT: do not try again on them.
_direct_refused: set[int] = set()


def npy_header(dtype: np.dtype, shape: tuple[int, ...], total: int | None = None) -> bytes:
    """A ``.npy`` 1.0 header; padded to ``total`` bytes, else to a multiple of 64 as numpy does."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), tuple(shape))
    fixed = len(NPY_MAGIC) + 2 + len(text) + 1
    pad = (total - fixed) if total is not None else (-fixed % 64)
    if pad < 0 or fixed + pad - len(NPY_MAGIC) - 2 > 65535:
        raise ValueError(f"shape {shape} does not fit a .npy 1.0 header")
    body = (text + " " * pad + "\n").encode("latin1")
    return NPY_MAGIC + len(body).to_bytes(2, "little") + body


#: ``alloc(nbytes) -> (raw, segment)``: page-aligned ``uint8`` memory of ``nbytes`` (e.g. shared
#: memory) and a handle the owner uses to find it again; see :class:`FrameBuffer`.
Allocator = Callable[[int], "tuple[np.ndarray, Any]"]


class FrameBuffer:
    """A growable ``(capacity, *shape)`` array in page-aligned memory with a header slot.

    ``append`` copies one frame in (the only per-step copy the recorder makes);
    :func:`write_frames` stores ``view()`` as a ``.npy`` with a single ``write()``.

    With ``alloc`` the memory comes from the caller (the process writer passes shared memory, so
    another process can write the frames without a copy); ``segment`` is the allocator's handle
    of the current memory, replaced when the buffer grows.
    """

    __slots__ = ("shape", "dtype", "frame_bytes", "raw", "start", "array", "n", "segment", "_alloc")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, capacity: int,
                 alloc: Allocator | None = None) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.frame_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.n = 0
        self.segment: Any = None
        self._alloc = alloc
        self._allocate(max(1, int(capacity)))

    @classmethod
    def over(cls, raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, n: int) -> "FrameBuffer":
        """A buffer of ``n`` frames laid out in ``raw`` as an allocator's memory (header slot first).

        The writer process uses this to see the recorder's shared memory without copying it.
        """
        self = cls.__new__(cls)
        self.shape, self.dtype, self.n = tuple(shape), np.dtype(dtype), int(n)
        self.frame_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        capacity = (len(raw) - HEADER_BYTES - ALIGN) // self.frame_bytes if self.frame_bytes else self.n
        if capacity < self.n or raw.ctypes.data % ALIGN:
            raise ValueError(f"{len(raw)} bytes at {raw.ctypes.data:#x} cannot hold {n} aligned frames of {shape}")
        self.segment, self._alloc, self.raw, self.start = None, None, raw, 0
        data = raw[HEADER_BYTES : HEADER_BYTES + capacity * self.frame_bytes]
        self.array = data.view(self.dtype).reshape(capacity, *self.shape)
        return self

    def _allocate(self, capacity: int) -> None:
        data_bytes = capacity * self.frame_bytes
        if self._alloc is None:
            # ALIGN in front to find an aligned start, ALIGN behind so a padded write stays inside.
            raw = np.empty(ALIGN + HEADER_BYTES + data_bytes + ALIGN, dtype=np.uint8)
            self.start = -(raw.ctypes.data + HEADER_BYTES) % ALIGN
        else:  # page-aligned already: only the slack behind
            raw, self.segment = self._alloc(HEADER_BYTES + data_bytes + ALIGN)
            self.start = 0
        self.raw = raw
        data = raw[self.start + HEADER_BYTES : self.start + HEADER_BYTES + data_bytes]
        self.array = data.view(self.dtype).reshape(capacity, *self.shape)

    @property
    def capacity(self) -> int:
        return len(self.array)

    def append(self, value: Any) -> None:
        if self.n == len(self.array):
            self.grow()
        self.array[self.n] = value
        self.n += 1

    def grow(self) -> None:
        """Double the capacity, keeping the frames appended so far."""
        old = self.array
        self._allocate(2 * len(old))
        self.array[: self.n] = old[: self.n]

    def view(self) -> np.ndarray:
        """The frames appended so far (a view, not a copy)."""
        return self.array[: self.n]

    def file_bytes(self) -> memoryview:
        """Header and data of the ``.npy`` file for ``view()``, ready to write (fills the header)."""
        total = HEADER_BYTES + self.n * self.frame_bytes
        self.raw[self.start : self.start + HEADER_BYTES] = np.frombuffer(
            npy_header(self.dtype, (self.n, *self.shape), HEADER_BYTES), dtype=np.uint8)
        return memoryview(self.raw)[self.start : self.start + total]


_devices: dict[str, int] = {}


def _device_of(directory: str) -> int:
    """st_dev of ``directory``, cached (trajectories are written under a few temp roots)."""
    dev = _devices.get(directory)
    if dev is None:
        dev = _devices[directory] = os.stat(directory).st_dev
    return dev


def _write_all(fd: int, data: memoryview, offset: int = 0) -> None:
    while offset < len(data):
        offset += os.pwrite(fd, data[offset:], offset)


def write_frames(path: str, buf: FrameBuffer, *, fsync: bool = False) -> None:
    """Write ``buf.view()`` to ``path`` as a ``.npy`` file, with ``O_DIRECT`` where it helps."""
    data = buf.file_bytes()
    total = len(data)
    direct = getattr(os, "O_DIRECT", 0)
    if direct and total >= DIRECT_MIN_BYTES:
        parent_dev = _device_of(os.path.dirname(os.path.dirname(path)) or ".")
        if parent_dev not in _direct_refused:
            padded = -(-total // ALIGN) * ALIGN  # the slack behind the frames makes this legal
            full = memoryview(buf.raw)[buf.start : buf.start + padded]
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | direct, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _direct_refused.add(parent_dev)
            else:
                try:
                    written = os.write(fd, full)
                    if written < total:  # short direct write: finish the unaligned rest buffered
                        os.close(fd)
                        fd = os.open(path, os.O_WRONLY)
                        _write_all(fd, data, written)
                    os.ftruncate(fd, total)
                    if fsync:
                        os.fsync(fd)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    _direct_refused.add(parent_dev)  # fall through to a buffered rewrite
                finally:
                    os.close(fd)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
