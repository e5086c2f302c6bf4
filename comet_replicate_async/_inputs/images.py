"""Image inputs: a URL, a local path or bytes, sent as a URL or a data URL."""

from __future__ import annotations

import base64
import os
from pathlib import Path

__all__ = ["MAX_IMAGE_BYTES", "ImageSource", "image_to_url"]

# A JSON body with a larger inline image is slow to send and risks a 413 from the
# gateway; host such an image and pass its URL instead.
MAX_IMAGE_BYTES = 10 * 1024 * 1024

ImageSource = str | bytes | os.PathLike[str]

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_to_url(value: ImageSource, *, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """An `http(s)://` or `data:` URL for an image given as a URL, a path or bytes.

    Raises:
        ValueError: a path that is not a readable file, an image over `max_bytes`,
            or bytes that are not a JPEG, PNG, GIF or WebP image. The message says
            which.
    """
    if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
        return value
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        origin = f"{len(data)} bytes"
    else:
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is neither an http(s) URL nor a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(_too_large(f"file {path.name!r}", size, max_bytes))
        data = path.read_bytes()
        origin = f"file {path.name!r}"
    if len(data) > max_bytes:
        raise ValueError(_too_large(origin, len(data), max_bytes))
    media_type = _media_type(data)
    if media_type is None:
        raise ValueError(f"{origin} is not a JPEG, PNG, GIF or WebP image")
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _media_type(data: bytes) -> str | None:
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _too_large(origin: str, size: int, max_bytes: int) -> str:
    return (
        f"{origin} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit "
        "for inline images; upload it and pass its URL instead"
    )
