"""The vectors stage: the mean activation of one concept's prompts per site (and step); and the diagnostics of
the maps fitted from them, written next to the vectors before any output is generated."""

from __future__ import annotations

import math
from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.core.files import load_stats
from steercore.core.linalg import Regularization
from steercore.core.methods import get_method
from steercore.core.plan import MapDiagnostics, SteeringPlan, diagnose_plan
from steercore.core.stats import ActivationStats, RowSample
from steercore.experiments.corpora import neutral_texts
from steercore.experiments.preset import Condition, Experiment
from steercore.experiments.promptsets import vector_prompts
from steercore.stages.statistics import collect
from steercore.tables import DIAGNOSTICS, write_tsv


def concept_means(exp: Experiment, concept: str, *, device: str = "cpu") -> ActivationStats:
    """The concept's mean activations over `vectors.samples` prompts (cycled from its prompt set, each
    `vectors.seeds_per_prompt` times in a row); text j is generated with seed `vectors.seed` + j."""
    texts = vector_prompts(exp, concept)
    seed = exp["vectors"].get("seed", exp["seed"])
    stats = ActivationStats("concept", exp["vectors"]["aggregation"],
                            meta={"model": exp.stats_model, "source": "prompts", "concept": concept,
                                  "samples": len(texts), "seed": seed})
    return collect(exp, texts, stats, seed=seed, desc=f"vectors {concept}", device=device)


# ------------------------------------------------------------------------------------------- diagnostics

HELD_OUT_LM, HELD_OUT_T2I = 32, 8  # default held-out neutral texts: an LLM text is one forward, an image a generation


def held_out_neutral(exp: Experiment, *, device: str = "cpu") -> tuple[RowSample, bool]:
    """Activations of `diagnostics.held_out` neutral texts that the statistics did not see (the corpus texts
    after the first cov.samples), aggregated like the cov stage's rows; (rows, whether they are held out:
    a corpus with no texts to spare lends its last ones)."""
    c, k = exp["cov"], exp["diagnostics"]["held_out"]
    k = k or (HELD_OUT_LM if exp.model_kind == "lm" else HELD_OUT_T2I)
    try:
        texts = neutral_texts(exp.corpus, c["samples"] + k, exp["seed"], root=exp.root_of("cov", "corpus"))[c["samples"]:]
        held_out = True
    except ConfigError:
        texts = neutral_texts(exp.corpus, c["samples"], exp["seed"], root=exp.root_of("cov", "corpus"))[-k:]
        held_out = False
    rows = RowSample(c["aggregation"], limit=4096)
    collect(exp, texts, rows, seed=exp["seed"] + c["samples"], desc="held-out neutral", device=device)
    return rows, held_out


def diagnostics_path(exp: Experiment, method: str) -> str:
    """Next to the vectors, named by everything the maps depend on (the method's generation digest at β = 0)."""
    vec = Path(exp.vectors_path(exp["source"])).parent
    return str(vec / "diagnostics" / f"{exp.name}.{method}.{exp.generation_digest(Condition(method, 0.0))}.tsv")


def diagnostic_rows(method: str, diags: list[MapDiagnostics], regularize: str) -> list[list]:
    fmt = lambda v: "" if v is None else f"{v:.4g}"
    return [[method, d.step, d.site, d.dim, "" if d.samples is None else d.samples, regularize if d.samples else "",
             fmt(d.condition_number), fmt(d.effective_rank), fmt(d.u_norm), fmt(d.move_mean), fmt(d.move_p95),
             d.rows] for d in diags]


def summarize(method: str, diags: list[MapDiagnostics], warn_move: float) -> list[str]:
    """The job-log lines of one method's diagnostics: the spread over sites, and one warning line when a map
    moves neutral data by more than `warn_move` (mean ‖Δx‖/‖x‖ at β = 1)."""
    moves = [d for d in diags if not math.isnan(d.move_mean)]
    conds = [d.condition_number for d in diags if d.condition_number is not None]
    ranks = [d.effective_rank for d in diags if d.effective_rank is not None]
    line = f"diagnostics {method}: {len(diags)} maps, ‖u‖ {min(d.u_norm for d in diags):.3g}–{max(d.u_norm for d in diags):.3g}"
    if conds:
        line += (f", Σ condition number {min(conds):.3g}–{max(conds):.3g}, effective rank "
                 f"{min(ranks):.1f}–{max(ranks):.1f} of D {diags[0].dim}")
    if moves:
        worst = max(moves, key=lambda d: d.move_mean)
        line += (f", neutral ‖Δx‖/‖x‖ at β 1: mean ≤ {worst.move_mean:.3g} (p95 ≤ "
                 f"{max(d.move_p95 for d in moves):.3g}) on {worst.rows} held-out rows")
    out = [line]
    if moves and worst.move_mean > warn_move:
        out.append(f"WARNING {method}: at β 1 the map of site {worst.site} (step {worst.step}) moves held-out "
                   f"neutral activations by {worst.move_mean:.0%} of their norm on average (> diagnostics.warn_move "
                   f"{warn_move:.0%}): expect unrelated outputs to change; try regularize or other statistics")
    return out


def plan_diagnostics(exp: Experiment, root: Path, plans: dict[str, SteeringPlan], *, device: str = "cpu",
                     held_out: RowSample | None = None) -> dict[str, tuple[list[list], list[str]]]:
    """method → (DIAGNOSTICS rows, job-log lines) for the fitted `plans`, on held-out neutral rows (collected
    here unless given)."""
    if held_out is None:
        held_out, _ = held_out_neutral(exp, device=device)
    # only the methods of this job: a CASteer job does not wait for the cov stage
    needs_cov = any(get_method(m).needs_neutral for m in plans) and not exp["identity_cov"]
    neutral = load_stats(root / exp.cov_path(), kind="neutral") if needs_cov else None
    reg = Regularization(**exp["regularize"])
    out = {}
    for method, plan in plans.items():
        diags = diagnose_plan(plan, neutral, held_out, identity_cov=exp["identity_cov"], regularization=reg)
        out[method] = (diagnostic_rows(method, diags, reg.label), summarize(method, diags, exp["diagnostics"]["warn_move"]))
    return out


def write_plan_diagnostics(exp: Experiment, root: Path, plans: dict[str, SteeringPlan], *,
                           device: str = "cpu") -> list[str]:
    """Write each method's diagnostics TSV (`diagnostics_path`) unless it exists; return the log lines (of
    every method, from the files' rows when they exist)."""
    todo = {m: p for m, p in plans.items() if not (root / diagnostics_path(exp, m)).is_file()}
    lines = []
    if todo:
        for method, (rows, log) in plan_diagnostics(exp, root, todo, device=device).items():
            write_tsv(root / diagnostics_path(exp, method), DIAGNOSTICS, rows)
            lines += log + [f"wrote {diagnostics_path(exp, method)}"]
    lines += [f"diagnostics {m}: {diagnostics_path(exp, m)} (already written)" for m in plans if m not in todo]
    return lines
