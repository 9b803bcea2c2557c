"""The paper stage: one paper figure or table (PDF, SVG and LaTeX) from score tables; names and the
experiments behind each are in steercore.figures.artefacts."""

from steercore.figures.render import render_artefact

__all__ = ["render_artefact"]
