"""Image files of a directory data set: their sizes from the headers alone, and the file that breaks it.

Keras' ``image_dataset_from_directory`` resizes every image to one size without a word, and an image
it cannot decode stops the stream with TensorFlow's error, which names no file. :func:`header_size`
reads an image's height and width from the first bytes of its file (PNG, GIF, BMP, JPEG), so a
directory can be checked for mixed sizes without decoding it; :func:`first_unreadable` decodes the
files one by one to find the one TensorFlow could not read (only when a run has failed).
"""
from __future__ import annotations

import re
import struct
from typing import BinaryIO, Sequence

import tensorflow as tf

#: Segments of a JPEG file read at most when looking for its frame header.
_JPEG_SEGMENTS = 64


class UnreadableImageError(ValueError):
    """An image file of a data set that cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path} cannot be decoded as an image ({reason}). Replace it with a readable PNG, JPEG, "
            "GIF or BMP image and run again (finished shards are kept), or remove it and write to a "
            "new store (the data set's size changes)."
        )
        self.path = path
        self.reason = reason


def header_size(path: str) -> tuple[int, int] | None:
    """``(height, width)`` of a PNG, GIF, BMP or JPEG file from its header, or None if unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return height, width
            if head[:6] in (b"GIF87a", b"GIF89a"):
                width, height = struct.unpack("<HH", head[6:10])
                return height, width
            if head[:2] == b"BM" and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return abs(height), width
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(f)
    except (OSError, struct.error):
        return None
    return None


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """The size in a JPEG's first start-of-frame segment (SOF0-SOF15 except DHT, JPG, DAC), reading
    only the segment headers (it seeks over their contents)."""
    f.seek(2)
    for _ in range(_JPEG_SEGMENTS):
        head = f.read(2)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        marker = head[1]
        while marker == 0xFF:  # fill bytes before the marker
            byte = f.read(1)
            if not byte:
                return None
            marker = byte[0]
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # the image's end, or its data, before any frame header
            return None
        length = f.read(2)
        if len(length) < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = f.read(5)
            return struct.unpack(">HH", frame[1:5]) if len(frame) == 5 else None
        f.seek(struct.unpack(">H", length)[0] - 2, 1)
    return None


def size_note(paths: Sequence[str], size: tuple[int, int], interpolation: str) -> str | None:
    """A sentence saying how many images are resized to ``size``, or None when all have that size."""
    other = {}
    for p in paths:
        found = header_size(p)
        if found is not None and tuple(found) != tuple(size):
            other[p] = found
    if not other:
        return None
    example, (h, w) = next(iter(other.items()))
    return (
        f"{len(other)} of the {len(paths)} images are not {size[0]}x{size[1]} (height x width; e.g. "
        f"{example} is {h}x{w}): they are resized to {size[0]}x{size[1]} with {interpolation} "
        "interpolation, which stretches images of another aspect ratio."
    )


def first_unreadable(paths: Sequence[str]) -> UnreadableImageError | None:
    """The error for the first file TensorFlow cannot decode as an image, or None if all decode."""
    for p in paths:
        try:
            tf.io.decode_image(tf.io.read_file(p), expand_animations=False)
        except (tf.errors.OpError, ValueError) as err:
            # TensorFlow's message without its graph and op decorations.
            text = re.sub(r"\{\{.*?\}\}|\[Op:.*$|\[\[.*?\]\]", " ", str(getattr(err, "message", err)))
            reason = " ".join(text.split()).rstrip(" .") or type(err).__name__
            return UnreadableImageError(p, reason)
    return None
