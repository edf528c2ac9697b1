"""The wire protocol between a :class:`~collectors.process_writer.ProcessWriter` and its writer process.

Both ends of the Unix socket speak it, so it lives in one place, encoder next to decoder:

* **Frames.** An 8-byte header (message length, blob length), a :mod:`marshal` message (builtin
  types only: marshal cannot rebuild arbitrary objects, unlike pickle; why marshal:
  :mod:`collectors.process_writer`), then the blob (raw array bytes). File descriptors
  (``SCM_RIGHTS``) ride on a frame's first bytes.
* **A job's fields** (:func:`_encode_fields`, :func:`_decode_fields`): a frame buffer in shared
  memory travels as its segment id and frame count; anything else array-like (arrays, a
  :class:`~collectors.columns.Column`) as its bytes in the blob.
* **The progress word.** The writer process stores ``(jobs done << _SPECIAL_BITS) | (special
  replies mod 2**_SPECIAL_BITS)`` in 8 bytes of shared memory; the parent reads it per episode.

>>> import socket, numpy as np
>>> a, b = socket.socketpair()
>>> fields, blobs, nbytes = _encode_fields({"rewards": np.arange(3.0)})
>>> _send(a, {"job": 0, "fields": fields}, blobs)
>>> msg, blob, fds = _recv(b)
>>> _decode_fields(msg, blob, {})["rewards"].tolist(), nbytes, fds
([0.0, 1.0, 2.0], 24, [])
>>> a.close(); b.close()
"""

from __future__ import annotations

import array
import json
import marshal
import mmap
import socket
import struct
from typing import Any, Mapping, Sequence

import numpy as np

from collectors.atomic import json_default
from collectors.frames import FrameBuffer

#: Frame header: message length, blob length (little-endian uint32 each).
_HEADER = struct.Struct("<II")
#: The writer's progress word in shared memory: (jobs done << _SPECIAL_BITS) | (special acks mod
#: 2**_SPECIAL_BITS). One aligned 8-byte store, so the parent reads both halves consistently.
_SPECIAL_BITS = 20
_SPECIAL_MASK = (1 << _SPECIAL_BITS) - 1


# ----------------------------------------------------------------------------- framing
def _encode(msg: dict[str, Any]) -> bytes:
    try:
        return marshal.dumps(msg)
    except ValueError:  # numpy scalars, Paths, ... in meta: as meta.json will store them
        if "meta" not in msg:
            raise
        meta = json.loads(json.dumps(msg["meta"], default=json_default))
        return marshal.dumps({**msg, "meta": meta})


def _send(sock: socket.socket, msg: dict[str, Any], blobs: Sequence[bytes] = (), fds: Sequence[int] = ()) -> None:
    payload = _encode(msg)
    blob_len = sum(len(b) for b in blobs)
    data = b"".join((_HEADER.pack(len(payload), blob_len), payload, *blobs))
    if fds:  # the descriptors ride on the frame's first bytes
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
    else:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes | None:
    """``n`` bytes (None at end of file), collecting any descriptors that arrive with them."""
    buf = bytearray()
    while len(buf) < n:
        data, ancdata, _flags, _addr = sock.recvmsg(n - len(buf), socket.CMSG_SPACE(16 * 4))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", cdata[: len(cdata) - len(cdata) % 4]))
        if not data:
            return None
        buf += data
    return bytes(buf)


def _recv(sock: socket.socket) -> tuple[dict[str, Any], bytes, list[int]] | None:
    """One frame, blocking: ``(message, blob, descriptors)``, or None at end of file."""
    fds: list[int] = []
    head = _recv_exact(sock, _HEADER.size, fds)
    if head is None:
        return None
    msg_len, blob_len = _HEADER.unpack(head)
    body = _recv_exact(sock, msg_len + blob_len, fds) if msg_len + blob_len else b""
    if body is None:
        return None
    return marshal.loads(body[:msg_len]), body[msg_len:], fds


def _read_frames(buf: bytearray) -> list[dict[str, Any]]:
    """The messages of the complete frames at the front of ``buf``, removed from it (a partial
    frame stays for the next read). Their blobs are skipped: the writer's replies carry none."""
    messages = []
    pos = 0
    while len(buf) - pos >= _HEADER.size:
        msg_len, blob_len = _HEADER.unpack_from(buf, pos)
        end = pos + _HEADER.size + msg_len + blob_len
        if len(buf) < end:
            break
        messages.append(marshal.loads(bytes(buf[pos + _HEADER.size : pos + _HEADER.size + msg_len])))
        pos = end
    del buf[:pos]
    return messages


# ----------------------------------------------------------------------------- a job's fields
class _Segment:
    """One shared-memory mapping of the parent; ``id`` names it in messages to the writer."""

    __slots__ = ("id", "mm", "desc", "__weakref__")

    def __init__(self, seg_id: int, mm: mmap.mmap) -> None:
        self.id, self.mm = seg_id, mm
        #: (shape, dtype str, dtype survives the str) of the frame buffer using it, set on first use
        self.desc: tuple[tuple[int, ...], str, bool] | None = None


def _encode_fields(fields: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], list[bytes], int]:
    """A job's fields as ``(descriptions, blobs, bytes of field data)``, builtins for marshal.

    ``("f", name, segment, frames, shape, dtype)`` for a frame buffer in shared memory (written by
    the writer process without a copy); ``("b", name, shape, dtype, offset, nbytes)`` for anything
    else ``np.ascontiguousarray`` takes, its bytes in the blob. Raises ``TypeError`` for a dtype
    the format cannot store.
    """
    descs: list[tuple[Any, ...]] = []
    blobs: list[bytes] = []
    offset = nbytes = 0
    for name, value in fields.items():
        if isinstance(value, FrameBuffer) and value.segment is not None:
            seg = value.segment
            if seg.desc is None:  # once per segment: its shape and dtype never change
                seg.desc = (tuple(value.shape), value.dtype.str, np.dtype(value.dtype.str) == value.dtype)
            if seg.desc[2]:
                descs.append(("f", name, seg.id, value.n, seg.desc[0], seg.desc[1]))
                nbytes += value.n * value.frame_bytes
                continue
        arr = np.ascontiguousarray(value.view() if isinstance(value, FrameBuffer) else value)
        if arr.dtype.hasobject or np.dtype(arr.dtype.str) != arr.dtype:
            raise TypeError(f"field {name!r} has dtype {arr.dtype}; the format stores plain arrays only")
        data = arr.tobytes()
        descs.append(("b", name, arr.shape, arr.dtype.str, offset, len(data)))
        blobs.append(data)
        offset += len(data)
    return descs, blobs, nbytes + offset


def _decode_fields(msg: dict[str, Any], blob: bytes, segments: dict[int, np.ndarray]
                   ) -> dict[str, FrameBuffer | np.ndarray]:
    """The fields :func:`_encode_fields` described, over the writer process's mapped ``segments``."""
    fields: dict[str, FrameBuffer | np.ndarray] = {}
    for desc in msg["fields"]:
        kind, name = desc[0], desc[1]
        if kind == "f":
            _k, _n, seg, n, shape, dtype = desc
            fields[name] = FrameBuffer.over(segments[seg], tuple(shape), np.dtype(dtype), n)
        else:
            _k, _n, shape, dtype, offset, nbytes = desc
            dt = np.dtype(dtype)
            fields[name] = (np.frombuffer(blob, dt, count=nbytes // dt.itemsize, offset=offset).reshape(shape)
                            if nbytes else np.zeros(shape, dt))
    return fields
