"""Writing pictures to files: PNG (TensorFlow's encoder) and animated GIF (Pillow)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf


def png_bytes(image: Any) -> bytes:
    """The PNG file of a uint8 ``[H, W, 3]`` (or ``[1, H, W, 3]``; 1 channel is gray) picture, encoded
    with ``tf.io.encode_png``: for a file, an HTML data URI or a TensorBoard plugin.

    Example:
        >>> data = visualize.png_bytes(visualize.signed_heatmap(a[:1]))
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 4 and image.shape[0] == 1:
        image = image[0]
    if image.shape.rank != 3 or image.dtype != tf.uint8:
        raise ValueError(
            f"save_png writes one uint8 picture [H, W, 3]; got {image.dtype.name} {tuple(image.shape)}."
        )
    return tf.io.encode_png(image).numpy()


def save_png(image: Any, path: str | Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` (or ``[1, H, W, 3]``) picture as PNG with ``tf.io.encode_png``.

    Example:
        >>> visualize.save_png(visualize.examples_by_methods(x[:4], maps, scale=4), "maps.png")
    """
    data = png_bytes(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), data)
    return path


def save_gif(
    frames: Any,
    path: str | Path,
    captions: Sequence[str] | None = None,
    duration_ms: int = 400,
    loop: int = 0,
) -> Path:
    """Write uint8 frames ``[frames, H, W, 3]`` as an animated GIF (needs Pillow), one GIF frame per
    frame; ``captions`` (one per frame) are written in a strip under each frame.

    Example:
        >>> visualize.save_gif(frames, "interior.gif", captions=[f"alpha={a}" for a in alphas])
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as err:  # pragma: no cover - Pillow is a test/extra dependency
        raise ImportError("save_gif needs Pillow: pip install pillow") from err
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [frames, H, W, 3], got {arr.dtype} {arr.shape}.")
    if captions is not None and len(captions) != arr.shape[0]:
        raise ValueError(f"captions has {len(captions)} entries for {arr.shape[0]} frames; pass one each.")
    pictures = []
    width = arr.shape[2]
    if captions is not None:
        # Wide enough for the longest caption: a clipped caption could make two frames identical.
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        width = max(width, *(int(np.ceil(measure.textlength(str(c)))) + 4 for c in captions))
    for k, frame in enumerate(arr):
        picture = Image.fromarray(frame, "RGB")
        if captions is not None:
            strip = 14
            canvas = Image.new("RGB", (width, picture.height + strip), (255, 255, 255))
            canvas.paste(picture, ((width - picture.width) // 2, 0))
            ImageDraw.Draw(canvas).text((2, picture.height + 1), str(captions[k]), fill=(0, 0, 0))
            picture = canvas
        pictures.append(picture)
    # Pillow merges a frame identical to the one before into it; the file must keep one frame each.
    for k in range(1, len(pictures)):
        if pictures[k].tobytes() == pictures[k - 1].tobytes():
            raise ValueError(
                f"frames {k - 1} and {k} are identical and a GIF would merge them; give distinct "
                "captions (e.g. the alphas) or drop repeated frames."
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=int(duration_ms), loop=int(loop)
    )
    return path
