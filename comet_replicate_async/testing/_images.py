"""Tiny, valid PNG images generated without any imaging library."""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from typing import Final

__all__ = ["image_for"]

#: Side of the square images, in pixels: big enough to be a real image,
#: small enough that downloading thousands of them costs nothing.
SIDE: Final = 64


def image_for(prompt: str, index: int) -> bytes:
    """A solid-colour PNG whose colour depends on *prompt* and *index*.

    Different prompts (and the outputs of one prediction) get different
    colours, so a client that mixes files up produces visibly wrong results.
    """
    digest = hashlib.sha256(f"{index}:{prompt}".encode()).digest()
    return _solid_png(digest[0], digest[1], digest[2])


@functools.lru_cache(maxsize=256)
def _solid_png(red: int, green: int, blue: int) -> bytes:
    # Each scanline is one filter byte (0: none) followed by RGB triples.
    row = b"\x00" + bytes((red, green, blue)) * SIDE
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * SIDE))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
