"""Pixel rules for shapes-world images: what colour and shape an image shows, read from its pixels alone.

An independent check of the testbed's learned image scorer (`TestbedImageScorer`): no weights, only the
world's own definitions (the colours' RGB, the shapes' areas relative to their bounding box).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from steercore.testbed.shapes import COLOURS, RGB

FOREGROUND = 0.3  # max channel above this is the shape (backgrounds are grey levels ≤ 0.12)
MIN_PIXELS = 12  # fewer foreground pixels than this: no shape drawn
# Fill of the foreground's bounding box: a square fills it (≈ 1), a circle π/4 ≈ 0.79, a triangle ≈ 0.5.
SQUARE_MIN, CIRCLE_MIN = 0.93, 0.655  # renders: square 1.0, circle 0.70–0.88, triangle 0.49–0.61


def pixel_attributes(image: Image.Image) -> tuple[str | None, str | None]:
    """(colour, shape) an image shows; None where no shape is drawn. The colour is the nearest of the world's
    colours to the foreground's mean RGB; the shape is read from how much of its bounding box it fills."""
    a = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    fg = a.max(axis=2) > FOREGROUND  # (H, W)
    if fg.sum() < MIN_PIXELS:
        return None, None
    mean = a[fg].mean(axis=0)  # (3,)
    colour = min(COLOURS, key=lambda c: float(((mean - np.asarray(RGB[c])) ** 2).sum()))
    ys, xs = np.nonzero(fg)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = fg.sum() / box
    shape = "square" if fill >= SQUARE_MIN else "circle" if fill >= CIRCLE_MIN else "triangle"
    return colour, shape
