"""The leaderboard of a concept switch (the hogs benchmark's, one per split): for each method × strength, how
often the switch happened where it should and nothing happened where it should not.

Columns, from the per-output verdicts of items.tsv (`accepted`: the scorer recognises the scored concept; for
CLIP, closer to it than to "" and to the switch's other concept) and from preservation.tsv:

- on the source prompts and on every extra prompt set (e.g. horses named without the word): the share of
  outputs recognised as the target (horse → pig rate);
- on the target prompts: the share still recognised as the target (pigs still pigs);
- on each unrelated prompt set: the share whose verdicts on the source and the target are those of the
  unsteered output of the same prompt and seed (unchanged), and the experiment's preservation measure
  (FID against those unsteered outputs).

Several presets scored on the same prompts (a split) share one leaderboard, e.g. the benchmark's grid and
the seed's submission configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.experiments.preset import ROOT, Experiment, results_dir
from steercore.figures.labels import PRESERVATION_NAME, method_name
from steercore.figures.pareto import ScoreTable
from steercore.figures.scores import load_scores
from steercore.tables import ITEM_SCORES, read_tsv

BASELINE = "none-0"


@dataclass(frozen=True)
class Column:
    """One leaderboard column: what it measures (`switched`, `kept`, `unchanged` or `preservation`) on
    which prompt set."""

    measure: str
    prompts: str


def leaderboard_columns(exp: Experiment) -> list[Column]:
    """Source and extra sets: switched; target set: kept; each unrelated set: unchanged, then preservation."""
    p = exp["prompts"]
    cols = [Column("switched", exp["source"])] + [Column("switched", c) for c in p.get("extra", {})]
    cols.append(Column("kept", exp["target"]))
    for c in p.get("unrelated", {}):
        cols += [Column("unchanged", c), Column("preservation", c)]
    return cols


def check_comparable(exps: list[Experiment]) -> None:
    """A leaderboard compares switches of one source to one target on the same prompts (one split)."""
    first = exps[0]
    for e in exps:
        if e["kind"] != "switch":
            raise ConfigError(f"leaderboard: experiment {e.name} erases {e['source']}; a leaderboard ranks "
                              "concept switches (source → target)")
        if "target" not in e["prompts"]:
            raise ConfigError(f"leaderboard: experiment {e.name} has no target prompts (prompts.target)")
    for e in exps[1:]:
        diff = [k for k in ("source", "target", "prompts", "words") if e[k] != first[k]]
        if diff:
            raise ConfigError(f"leaderboard: experiments {first.name} and {e.name} differ in {', '.join(diff)}; "
                              "a leaderboard compares presets on the same prompts (one split)")


def items_path(name: str, root: Path = ROOT) -> Path:
    """results/scores/{name}/items.tsv, written by gather_scores with concept_scores.tsv."""
    return results_dir(root) / "scores" / name / "items.tsv"


def load_items(exp: Experiment, root: Path = ROOT) -> list[dict]:
    path = items_path(exp.name, root)
    if not path.is_file():
        raise ConfigError(f"no per-output scores for experiment '{exp.name}' ({path}); "
                          f"run `snakemake results/scores/{exp.name}/items.tsv` first")
    return read_tsv(path, ITEM_SCORES)


def _verdicts(exp: Experiment, items: list[dict]) -> dict[tuple[str, str], dict[tuple[str, str], dict[str, bool]]]:
    """(condition, prompt set) → (index, seed) → scored concept → accepted, for the source and the target."""
    out: dict = {}
    for r in items:
        if r["scored"] not in (exp["source"], exp["target"]):
            continue
        if r["accepted"] not in ("true", "false"):
            raise ConfigError(f"{exp.name}: items.tsv has no accepted flag for {r['condition']} on '{r['prompts']}' "
                              f"against '{r['scored']}'; the leaderboard needs a scorer that recognises concepts "
                              f"(not {exp.concept_scorer_for(r['scored'])})")
        out.setdefault((r["condition"], r["prompts"]), {}).setdefault((r["index"], r["seed"]), {})[r["scored"]] = \
            r["accepted"] == "true"
    return out


def leaderboard_values(exp: Experiment, items: list[dict], preservation_rows: list[dict]) -> dict[str, list[float]]:
    """Condition label → one value per column of `leaderboard_columns(exp)`: shares in [0, 1], preservation
    as measured. One ConfigError line when a condition lacks scores for a column."""
    verdicts = _verdicts(exp, items)
    table = ScoreTable([], preservation_rows)
    metric = exp.preservation_metric
    src, tgt = exp["source"], exp["target"]

    def outputs(cond: str, prompts: str) -> dict:
        got = verdicts.get((cond, prompts))
        if not got:
            raise ConfigError(f"{exp.name}: no per-output scores of {cond} on '{prompts}' prompts; rerun the "
                              "score stage")
        missing = [k for k, v in got.items() if set(v) != {src, tgt}]
        if missing:
            raise ConfigError(f"{exp.name}: output {missing[0]} of {cond} on '{prompts}' is not scored against "
                              f"both {src} and {tgt}; rerun the score stage")
        return got

    values = {}
    for cond in exp.conditions:
        row = []
        for col in leaderboard_columns(exp):
            if col.measure == "preservation":
                row.append(table.preservation(cond.label, col.prompts, metric))
                continue
            mine = outputs(cond.label, col.prompts)
            if col.measure in ("switched", "kept"):
                row.append(sum(v[tgt] for v in mine.values()) / len(mine))
                continue
            base = outputs(BASELINE, col.prompts)
            unpaired = sorted(set(mine) - set(base))
            if unpaired:
                raise ConfigError(f"{exp.name}: output {unpaired[0]} of {cond.label} on '{col.prompts}' has no "
                                  "unsteered counterpart (same prompt and seed) in the baseline")
            row.append(sum(v == base[k] for k, v in mine.items()) / len(mine))
        values[cond.label] = row
    return values


def _heading(exp: Experiment, col: Column) -> str:
    if col.measure == "preservation":
        return PRESERVATION_NAME.get(exp.preservation_metric, exp.preservation_metric)
    return "% unchanged" if col.measure == "unchanged" else f"% {exp['target']}"


def leaderboard_grid(exps: list[Experiment], root: Path = ROOT):
    """The leaderboard of `exps` (checked comparable) as a ScoreGrid (drawn and typeset like the paper's
    tables): column groups per prompt set, one row per preset × condition; shares in percent."""
    from steercore.figures.score_grid import ScoreGrid  # matplotlib: not at import (the DAG lists artefacts)

    check_comparable(exps)
    exp = exps[0]
    cols = leaderboard_columns(exp)
    groups: list[tuple[str, list[str]]] = []
    for col in cols:
        if groups and groups[-1][0] == col.prompts:
            groups[-1][1].append(_heading(exp, col))
        else:
            groups.append((col.prompts, [_heading(exp, col)]))
    rows = []
    for e in exps:
        values = leaderboard_values(e, load_items(e, root), load_scores(e, root).preservation_rows)
        for cond in e.conditions:
            name = method_name(cond.method) + (f" ({e.name})" if len(exps) > 1 else "")
            cells = [f"{v:.2f}" if c.measure == "preservation" else f"{100 * v:.1f}"
                     for c, v in zip(cols, values[cond.label])]
            rows.append((name, "--" if cond.method == "none" else f"{cond.strength:g}", cells))
    src, tgt = exp["source"], exp["target"]
    pres = PRESERVATION_NAME.get(exp.preservation_metric, exp.preservation_metric)
    caption = (f"Leaderboard of {', '.join(e.name for e in exps)} ({src} → {tgt}): % of outputs recognised as "
               f"{tgt} ({exp.concept_scorer_for(tgt)}) on the {src} prompts and the other {src} prompt sets, "
               f"% of {tgt} prompts still {tgt}, % of unrelated outputs whose {src}/{tgt} verdicts equal those "
               f"of the unsteered output of the same prompt and seed, and {pres} against those outputs.")
    return ScoreGrid(groups, rows, caption)
