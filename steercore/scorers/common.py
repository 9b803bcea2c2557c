"""What every scorer shares: device choice, batching with a progress bar, images from paths or PIL.
Weights are found through `steercore.hub`, tables written through `steercore.tables`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from steercore.core.errors import ConfigError


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """An explicit `device` wins; otherwise cuda when available, else cpu."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batched(items: Sequence, batch_size: int, desc: str, progress: bool = True) -> Iterator[Sequence]:
    """Consecutive slices of `items` (the last one may be short: nothing is dropped), with a progress bar
    counting items."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    with tqdm(total=len(items), desc=desc, unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            yield chunk
            bar.update(len(chunk))


def load_image(item):
    """A PIL image in RGB from a PIL image or an image path."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as im:
            return im.convert("RGB")
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    raise ConfigError(f"expected a PIL image or an image path, got {type(item).__name__}")
