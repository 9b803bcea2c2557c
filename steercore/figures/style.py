"""The look every figure shares: one marker and colour per method (from the method registry) and
reproducible files (no dates inside)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from steercore.core.files import atomic_path
from steercore.core.methods import METHODS

_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}, "png": {}}



def method_style(method: str) -> tuple[str, str, str]:
    """(marker, edge colour, display name) of a method's points."""
    m = METHODS.get(method)
    return (m.marker, m.colour, m.label) if m else ("x", "black", method)


def method_handles(methods) -> list[Line2D]:
    """Legend entries for `methods`, in registry order."""
    return [Line2D([], [], marker=m.marker, ls="", markeredgecolor=m.colour, markerfacecolor="white",
                   markeredgewidth=1.5, label=m.label) for m in METHODS.values() if m.name in methods]


def save_figure(fig: Figure, paths: list[Path]) -> None:
    """Write the figure to each path (format from the suffix: pdf, svg, png), atomically and reproducibly."""
    for path in paths:
        fmt = Path(path).suffix.lstrip(".")
        with matplotlib.rc_context({"svg.hashsalt": "steerflow"}), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=_METADATA.get(fmt, {}),
                        dpi=150 if fmt == "png" else "figure")
