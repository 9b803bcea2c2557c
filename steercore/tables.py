"""Every table the workflow writes: its columns, defined once, and the one way to read and write it.

Tables are tab-separated with a header line, written atomically (readers never see half a table). Fields
are quoted only when they must be (a tab, newline or quote inside a prompt), so the reader gets back what
was written.

May import: steercore.core.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from steercore.core.errors import FileFormatError
from steercore.core.files import write_text_atomic

MANIFEST = ("condition", "method", "strength", "concept", "index", "seed", "prompt", "path")
"""results/generate/{experiment}/manifest.tsv: one generated output (image or answer) per row."""
CONCEPT_SCORES = ("condition", "method", "strength", "prompts", "scored", "n", "mean", "std", "accuracy")
"""results/scores/{experiment}/concept_scores.tsv: per condition × prompt set × scored concept."""
ITEM_SCORES = ("condition", "method", "strength", "prompts", "index", "seed", "scored", "score", "accepted")
"""results/scores/{experiment}/items.tsv (and per job, {job}/items.tsv): one output scored against one concept;
accepted: whether the scorer recognises the concept (true/false; empty where the scorer has no such test)."""
PRESERVATION = ("condition", "method", "strength", "prompts", "metric", "value", "n")
"""results/scores/{experiment}/preservation.tsv: per condition × prompt set × metric, against the baseline."""
PARETO_POINTS = ("method", "strength", "x", "y", "frontier")
"""results/pareto/{experiment}.tsv: the baseline, every method × strength, and the goal line."""
PARETO_INTERVALS = ("method", "strength", "y", "y_lo", "y_hi", "n")
"""results/pareto/{experiment}.intervals.tsv: y of the Pareto plot with its seeded 95% bootstrap interval over outputs."""

DIAGNOSTICS = ("method", "step", "site", "dim", "samples", "regularize", "condition_number", "effective_rank", "u_norm",
               "move_mean", "move_p95", "held_out_rows")
"""results/vectors/{model}/{vecid}/diagnostics/{experiment}.{method}.tsv: per fitted map (step, site), before
any generation: the fitted Σ's condition number (λ_max/λ_min over its support) and effective rank
(exp of the spectral entropy), ‖u‖, and ‖Δx‖/‖x‖ of the map at β = 1 on held-out neutral rows (mean, 95th
percentile). Σ columns are empty for methods that read no covariance."""
ABLATION_POINTS = ("member", "kind", "cov_aggregation", "cov_samples", "llm_positions", "regularize_kind",
                   "regularize_amount", "llm_site", "method", "strength", "y", "x", "target_rate", "kept",
                   "kept_relative", "neutral_move_mean", "frontier")
"""results/ablation/points.tsv (benchmarks/ablation.py): one ablation member × method × strength: the swept
settings, the workflow's Pareto y and x, the exact-word switch (or erase) rate on source prompts, the share of
unrelated answers still on their own topic (and relative to the baseline), the largest mean neutral move."""

ABLATION_POINTS_T2I = ("member", "kind", "cov_aggregation", "cov_samples", "cov_per_step", "regularize_kind",
                       "regularize_amount", "only_up", "method", "strength", "y", "x", "target_rate", "kept",
                       "kept_relative", "neutral_move_mean", "frontier")
"""results/ablation/points_t2i.tsv (benchmarks/ablation.py --kind t2i): as ABLATION_POINTS for the T2I testbed,
with the pixel rules' switch (or erase) rate on source prompts and the share of unrelated images that show
every colour and shape their prompt names."""


def format_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """The TSV text of `rows` under `header`; None becomes an empty field."""
    header = list(header)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row of {len(row)} fields for a header of {len(header)}: {row!r}")
        w.writerow("" if v is None else v for v in row)
    return buf.getvalue()


def write_tsv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a table atomically."""
    write_text_atomic(path, format_table(header, rows))


def read_tsv(path: str | os.PathLike, header: Sequence[str] | None = None) -> list[dict]:
    """The rows of a table as dicts; with `header`, refuse (one line) a table with other columns."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        rows = list(reader)
        columns = reader.fieldnames or []
    if header is not None and list(columns) != list(header):
        raise FileFormatError(f"{Path(path)}: columns {', '.join(columns) or '(none)'}; expected "
                              f"{', '.join(header)} (a table from another version? rerun the stage that writes it)")
    return rows
