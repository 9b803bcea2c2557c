"""The gather steps: one experiment-level table from the tables of its generate and score jobs.

`results/generate/{experiment}/manifest.tsv` (every output, in condition order) from the jobs' manifests, and
`results/scores/{experiment}/{items,concept_scores,preservation}.tsv` from the score jobs' per-output scores
and preservation rows; the concept scores are aggregated from the per-output ones. Only tables: no model.
"""

from __future__ import annotations

from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.experiments.preset import Experiment
from steercore.stages.score import aggregate_items
from steercore.tables import CONCEPT_SCORES, ITEM_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv


def _in_condition_order(exp: Experiment, rows: list[dict], where: str) -> list[dict]:
    """`rows` sorted (stably) by their condition's place in the experiment; every condition must be there."""
    order = {c.label: i for i, c in enumerate(exp.conditions)}
    unknown = sorted({r["condition"] for r in rows} - set(order))
    if unknown:
        raise ConfigError(f"{where}: conditions {', '.join(unknown)} are not in experiment {exp.name}; "
                          "rerun the workflow (the preset changed)")
    absent = [c for c in order if c not in {r["condition"] for r in rows}]
    if absent:
        raise ConfigError(f"{where}: no rows for conditions {', '.join(absent)} of experiment {exp.name}")
    return sorted(rows, key=lambda r: order[r["condition"]])


def _rows(paths: list[Path], header) -> list[dict]:
    return [r for p in paths for r in read_tsv(p, header)]


def gather_manifest(exp: Experiment, manifests: list[Path], out: Path) -> int:
    """The experiment's manifest from its generate jobs' manifests; returns its row count."""
    rows = _in_condition_order(exp, _rows(manifests, MANIFEST), str(manifests[0].parent.parent))
    write_tsv(out, MANIFEST, [[r[k] for k in MANIFEST] for r in rows])
    return len(rows)


def gather_scores(exp: Experiment, items: list[Path], preservation: list[Path], *, items_out: Path,
                  concept_out: Path, preservation_out: Path) -> tuple[int, int, int]:
    """The experiment's per-output scores, aggregated concept scores and preservation; returns row counts."""
    where = str(items[0].parent.parent)
    item_rows = _in_condition_order(exp, _rows(items, ITEM_SCORES), where)
    pres_rows = sorted(_rows(preservation, PRESERVATION), key=lambda r: (r["condition"], r["prompts"]))
    concept_rows = aggregate_items(item_rows)
    write_tsv(items_out, ITEM_SCORES, [[r[k] for k in ITEM_SCORES] for r in item_rows])
    write_tsv(concept_out, CONCEPT_SCORES, concept_rows)
    write_tsv(preservation_out, PRESERVATION, [[r[k] for k in PRESERVATION] for r in pres_rows])
    return len(item_rows), len(concept_rows), len(pres_rows)
