"""The output files of `sandbox/image`: one tiny valid PNG, served for every output index."""

from __future__ import annotations

import struct
import zlib
from typing import Final


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def make_png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (0, 128, 255)) -> bytes:
    """A valid 8-bit RGB PNG filled with one colour."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


#: What `GET /sandbox/files/{prediction_id}/{index}.png` serves (immutable bytes).
TINY_PNG: Final[bytes] = make_png()
