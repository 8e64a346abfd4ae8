"""The bytes of file outputs, generated on request from their seed: nothing is kept in memory.

Images are small valid PNGs whose colour comes from the seed; videos are seeded random bytes of
the asked size, streamed in chunks. The same file always has the same bytes (and sha256), so a
test can check a copy byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import zlib
from collections.abc import Iterator
from typing import Final

from sandbox.models import OutputFile

CHUNK_BYTES: Final = 1024 * 1024
IMAGE_SIDE: Final = 64


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


#: A 1x1 PNG (kept for callers that need the smallest valid image).
TINY_PNG: Final[bytes] = make_png()


def chunks(file: OutputFile) -> Iterator[bytes]:
    """The file's bytes, in chunks of at most `CHUNK_BYTES`."""
    if file.size_bytes is None:
        digest = hashlib.sha256(file.seed.encode()).digest()
        yield make_png(IMAGE_SIDE, IMAGE_SIDE, (digest[0], digest[1], digest[2]))
        return
    rng = random.Random(file.seed)
    left = file.size_bytes
    while left > 0:
        size = min(CHUNK_BYTES, left)
        yield rng.randbytes(size)
        left -= size


def size_of(file: OutputFile) -> int:
    if file.size_bytes is not None:
        return file.size_bytes
    return sum(len(chunk) for chunk in chunks(file))


def data_uri(file: OutputFile) -> str:
    """The file as a ``data:`` URI (what sync mode returns instead of a URL)."""
    encoded = base64.b64encode(b"".join(chunks(file))).decode("ascii")
    return f"data:{file.content_type};base64,{encoded}"
