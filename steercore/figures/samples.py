"""Sample grids: the same prompts and seeds under every condition, one row per condition (PNG)."""

from __future__ import annotations

from pathlib import Path

from steercore.core.files import atomic_path
from steercore.tables import MANIFEST, read_tsv


def image_grid(rows: list[tuple[str, list[Path]]], path: Path, cell: int = 64) -> None:
    """A PNG grid: one row per condition (label at the left), the same prompts and seeds in every column."""
    from PIL import Image, ImageDraw

    label_w = 110
    ncol = max(len(paths) for _, paths in rows)
    grid = Image.new("RGB", (label_w + ncol * cell, len(rows) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, paths) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), label, fill="black")
        for c, p in enumerate(paths):
            grid.paste(Image.open(p).convert("RGB").resize((cell, cell), Image.NEAREST), (label_w + c * cell, r * cell))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")


def experiment_grid(manifest: Path, out: Path, columns: int = 12) -> None:
    """Grid of the outputs of each concept in turn, one row per condition: different prompts first (the first
    seed of each), so a row shows as many prompts as fit in `columns`."""
    rows = read_tsv(manifest, MANIFEST)
    by_cond: dict[str, list[dict]] = {}
    for r in rows:
        by_cond.setdefault(r["condition"], []).append(r)
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    per = max(1, columns // len(concepts))
    grid = []
    for cond, items in by_cond.items():
        order = sorted(items, key=lambda x: (int(x["seed"]), int(x["index"])))  # stable: same columns per row
        picked = [r for c in concepts for r in [x for x in order if x["concept"] == c][:per]]
        grid.append((cond, [manifest.parent / r["path"] for r in picked]))
    image_grid(grid, out)
