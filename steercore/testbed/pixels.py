"""Pixel rules for shapes-world images: what colour and shape an image shows, read from its pixels alone.

An independent check of the testbed's learned image scorer (`TestbedImageScorer`): no weights, only the
world's own definitions (the colours' RGB, the shapes' areas relative to their bounding box).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from steercore.testbed.shapes import COLOURS, RGB

CONTRAST = 0.2  # brightest pixels less than this above the median (the background): no shape drawn
MIN_PIXELS = 12  # fewer foreground pixels than this: no shape drawn
# Fill of the foreground's bounding box: a square fills it (≈ 1), a circle π/4 ≈ 0.79, a triangle ≈ 0.5.
# Renders: square 1.0, circle 0.73–0.87, triangle 0.50–0.62; the testbed model's unsteered images (96, every
# colour and shape): square 0.81–0.99, circle 0.71–0.80, triangle 0.49–0.59 (two at 0.72).
SQUARE_MIN, CIRCLE_MIN = 0.89, 0.65


def pixel_attributes(image: Image.Image) -> tuple[str | None, str | None]:
    """(colour, shape) an image shows; None where no shape is drawn. The colour is the nearest of the world's
    colours to the foreground's mean RGB; the shape is read from how much of its bounding box it fills."""
    a = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    v = a.max(axis=2)  # (H, W)
    background, bright = float(np.median(v)), float(np.percentile(v, 99.5))
    if bright - background < CONTRAST:
        return None, None
    fg = v > (background + bright) / 2  # half way up: the edge of a blurred shape, above a generated background's noise
    padded = np.pad(fg, 1).astype(np.int32)  # a foreground pixel stays when ≥ 2 of its 8 neighbours are foreground
    around = sum(padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # (H, W), itself included
    fg &= around >= 3
    if fg.sum() < MIN_PIXELS:
        return None, None
    mean = a[fg].mean(axis=0)  # (3,)
    colour = min(COLOURS, key=lambda c: float(((mean - np.asarray(RGB[c])) ** 2).sum()))
    ys, xs = np.nonzero(fg)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = fg.sum() / box
    shape = "square" if fill >= SQUARE_MIN else "circle" if fill >= CIRCLE_MIN else "triangle"
    return colour, shape
