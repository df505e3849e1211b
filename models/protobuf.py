"""A minimal protocol-buffers wire-format reader (varint, 32/64-bit, length-delimited), enough to read
MediaPipe's ``geometry_pipeline_metadata_landmarks.binarypb`` without the protobuf package."""
from __future__ import annotations

import struct
from typing import Iterator

from ..core.errors import ModelError


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value): ints for varint, bytes for length-delimited, raw bytes for
    fixed32/fixed64."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ModelError(f"unsupported protobuf wire type {wt}")
        yield num, wt, val


def packed_floats(val: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(val) // 4}f", val))


def packed_varints(val: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(v)
    return out
