"""The ablations of issue 17: every member of the ablation families, through the workflow's own stage
functions, scored with the workflow's scorers and with an independent measure (exact topic words for the
LM's answers, pixel rules for the T2I model's images).

Per member (a preset of `config/experiments/ablation_*.yaml`) it runs, in one process: the cov and vectors
stages (`stages.cov.neutral_statistics`, `stages.vectors.concept_means`; files at the workflow's own paths
under results/cov and results/vectors, reused when present, so a member shares statistics with the workflow
and with other members of the same settings), the generate stage (`stages.generate.run_generation` with
`experiment_plans`) and the score stage (`stages.score.score_unit`) into results/ablation/<member>/, and the
workflow's Pareto point (`figures.pareto.pareto`: y = the topics scorer's Δ, x = 1 − MiniLM consistency on
unrelated prompts). The independent measure reads the answers themselves: an answer to a source prompt is
*switched* when its content words are mostly the target topic's (TopicScorer.classify over every topic of the
world), *erased* when it has content words and none from the source topic; an answer to an unrelated prompt is
*kept* when it is still classified as its own topic. An image (`testbed.pixels.pixel_attributes`: nearest
colour of the foreground, shape from how much of its bounding box it fills) of a source prompt is *switched*
when it shows the target colour (or shape), *erased* when it shows a shape but not the source's colour (or
shape); an image of an unrelated prompt is *kept* when it shows every colour and shape its prompt names. One
process, not Snakemake: 30 members × 18 conditions would be ~1000 jobs of ~5 s of imports each on a 2-core
machine.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ablation.py [--kind lm|t2i] [--members NAME ...]
        [--family ablation_lm ablation_lm_erase] [--out results/ablation/points.tsv] [--threads 2]

Writes every (member, method, strength) to --out (schema `tables.ABLATION_POINTS`, or `ABLATION_POINTS_T2I`
with --kind t2i: default results/ablation/points_t2i.tsv) and prints, per member and method, the best point
that keeps ≥ 95% of the baseline's unrelated rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steercore.core.files import load_stats, save_stats  # noqa: E402
from steercore.experiments.preset import Experiment, list_families, load_experiment  # noqa: E402
from steercore.figures.pareto import pareto  # noqa: E402
from steercore.models.registry import load_model  # noqa: E402
from steercore.stages.cov import neutral_statistics  # noqa: E402
from steercore.stages.generate import experiment_plans, run_generation, sampling  # noqa: E402
from steercore.stages.score import aggregate_items, score_unit  # noqa: E402
from steercore.stages.vectors import concept_means, plan_diagnostics  # noqa: E402
from steercore.tables import ABLATION_POINTS, ABLATION_POINTS_T2I, DIAGNOSTICS, ITEM_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv  # noqa: E402
from steercore.testbed.pixels import pixel_attributes  # noqa: E402
from steercore.testbed.scorers import TopicScorer  # noqa: E402
from steercore.testbed.shapes import COLOURS, caption_attributes  # noqa: E402
from steercore.testbed.topics import TOPICS  # noqa: E402

KEPT = 0.95  # the bar: ≥ 95% of the baseline's unrelated-topic rate
SWEPT = {"lm": ("cov.aggregation", "cov.samples", "llm_positions", "regularize.kind", "regularize.amount", "llm_site"),
         "t2i": ("cov.aggregation", "cov.samples", "cov.per_step", "regularize.kind", "regularize.amount", "only_up")}
POINTS = {"lm": ABLATION_POINTS, "t2i": ABLATION_POINTS_T2I}
FAMILIES = {"lm": ["ablation_lm", "ablation_lm_erase"], "t2i": ["ablation_t2i", "ablation_t2i_shape", "ablation_t2i_erase"]}
METHODS = {"switch": ("casteer", "leace", "midsteer"), "erase": ("casteer", "leace")}


def setting(exp: Experiment, dotted: str):
    value = exp.cfg
    for part in dotted.split("."):
        value = value[part]
    return value


def ensure_statistics(exp: Experiment) -> None:
    """The cov and vectors files of `exp` at the workflow's paths (computed once, then reused)."""
    if exp.needs_cov and not (ROOT / exp.cov_path()).is_file():
        save_stats(neutral_statistics(exp), ROOT / exp.cov_path())
    for concept in exp.concepts:
        path = ROOT / exp.vectors_path(concept)
        if not path.is_file():
            save_stats(concept_means(exp, concept), path)


def exact_word_rates(exp: Experiment, rows: list[dict], folder: Path) -> dict[str, dict[str, float]]:
    """condition → {target: switched or erased share on source prompts, kept: share of unrelated answers
    still on their own topic}."""
    scorer = TopicScorer()
    src, tgt = exp["source"], exp["target"]
    unrelated = list(exp["prompts"]["unrelated"])
    by: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        by[(r["condition"], r["concept"])].append((folder / r["path"]).read_text().strip())
    out = {}
    for cond in sorted({c for c, _ in by}):
        answers = by[(cond, src)]
        if exp["kind"] == "switch":
            hit = [t == tgt for t in scorer.classify(answers, list(TOPICS))]
        else:
            hit = [bool(scorer.content_words(a)) and s == 0 for a, s in zip(answers, scorer.score(answers, src))]
        kept = [t == u for u in unrelated for t in scorer.classify(by[(cond, u)], list(TOPICS))]
        out[cond] = {"target": sum(hit) / len(hit), "kept": sum(kept) / len(kept)}
    return out


def pixel_rates(exp: Experiment, rows: list[dict], folder: Path) -> dict[str, dict[str, float]]:
    """condition → {target: switched or erased share on source prompts, kept: share of the other prompts' images
    (target and unrelated concepts) that show every colour and shape their prompt names}, by the pixel rules."""
    src, tgt = exp["source"], exp["target"]
    attr = "colour" if src in COLOURS else "shape"
    shown = lambda r: dict(zip(("colour", "shape"), pixel_attributes(Image.open(folder / r["path"]))))
    by: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in rows:
        got = shown(r)
        if r["concept"] == src:
            hit = got[attr] == tgt if exp["kind"] == "switch" else got[attr] not in (src, None)
        else:
            said = caption_attributes(r["prompt"])
            hit = all(got[k] == said[k] for k in ("colour", "shape") if k in said)
        by[(r["condition"], "target" if r["concept"] == src else "kept")].append(hit)
    return {cond: {k: sum(by[(cond, k)]) / len(by[(cond, k)]) for k in ("target", "kept")}
            for cond in sorted({c for c, _ in by})}


def run_member(name: str, out_root: Path) -> list[list]:
    exp = load_experiment(name)
    t0 = time.perf_counter()
    ensure_statistics(exp)
    folder = out_root / name
    plans = experiment_plans(exp, ROOT)
    diag = plan_diagnostics(exp, ROOT, plans)
    write_tsv(folder / "diagnostics.tsv", DIAGNOSTICS, [r for rows, _ in diag.values() for r in rows])
    for _, lines in diag.values():
        print("\n".join(f"  {line}" for line in lines))
    moves = {m: max(float(r[DIAGNOSTICS.index("move_mean")]) for r in rows) for m, (rows, _) in diag.items()}
    model = load_model(exp["model"], device="cpu")
    manifest = run_generation(exp, model, folder, plans, **dict(zip(("steps", "guidance"), sampling(exp))),
                              progress=False)
    write_tsv(folder / "manifest.tsv", MANIFEST,
              [(c.label, c.method, f"{c.strength:g}", s.concept, s.index, s.seed, s.prompt, p.relative_to(folder))
               for c, s, p in manifest])
    steered = [c.label for c in exp.conditions]  # the baseline too: the goal line reads its scores
    score_unit(exp, steered, [folder / "manifest.tsv"], folder, folder / "items.tsv", folder / "preservation.tsv",
               device="cpu")
    items = read_tsv(folder / "items.tsv", ITEM_SCORES)
    concept_rows = [dict(zip(("condition", "method", "strength", "prompts", "scored", "n", "mean", "std", "accuracy"),
                             r)) for r in aggregate_items(items)]
    result = pareto(exp, concept_rows, read_tsv(folder / "preservation.tsv", PRESERVATION))
    measure = exact_word_rates if exp.model_kind == "lm" else pixel_rates
    rates = measure(exp, read_tsv(folder / "manifest.tsv", MANIFEST), folder)
    base = rates["none-0"]
    settings = [str(setting(exp, k)) for k in SWEPT[exp.model_kind]]
    rows = [[name, exp["kind"], *settings, "none", "0", f"{result.baseline.y:.4g}", f"{result.baseline.x:.4g}",
             *rate_fields(base, base), "", ""]]
    for p in result.points:
        mean_move = moves.get(p.method, float("nan"))
        rows.append([name, exp["kind"], *settings, p.method, f"{p.strength:g}", f"{p.y:.4g}", f"{p.x:.4g}",
                     *rate_fields(rates[f"{p.method}-{p.strength:g}"], base), f"{mean_move:.4g}",
                     str(p.frontier).lower()])
    print(f"{name}: {len(result.points)} points in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def rate_fields(rate: dict[str, float], base: dict[str, float]) -> list[str]:
    """The target_rate, kept and kept_relative fields of one condition's rates against the baseline's."""
    return [f"{rate['target']:.4g}", f"{rate['kept']:.4g}", f"{rate['kept'] / base['kept']:.4g}" if base["kept"] else ""]


def rescored(rows: list[list], header: tuple[str, ...], out_root: Path) -> list[list]:
    """`rows` with target_rate / kept / kept_relative measured again from each member's outputs (after a change
    of the independent measure; the workflow's own y and x stay)."""
    h = list(header)
    rates = {}
    for name in {r[0] for r in rows}:
        exp = load_experiment(name)
        measure = exact_word_rates if exp.model_kind == "lm" else pixel_rates
        rates[name] = measure(exp, read_tsv(out_root / name / "manifest.tsv", MANIFEST), out_root / name)
    out = []
    for r in rows:
        at = h.index("target_rate")  # target_rate, kept, kept_relative are adjacent
        got = rates[r[0]][f"{r[h.index('method')]}-{r[h.index('strength')]}"]
        out.append([*r[:at], *rate_fields(got, rates[r[0]]["none-0"]), *r[at + 3:]])
    return out


def best_points(rows: list[list], header: tuple[str, ...] = ABLATION_POINTS) -> list[str]:
    """Per member and method: the strongest target rate that keeps ≥ KEPT of the baseline's unrelated rate."""
    h = list(header)
    out = []
    by = defaultdict(list)
    for r in rows:
        if r[h.index("method")] != "none":
            by[(r[0], r[h.index("method")])].append(r)
    for (member, method), pts in by.items():
        ok = [p for p in pts if p[h.index("kept_relative")] and float(p[h.index("kept_relative")]) >= KEPT]
        best = max(ok, key=lambda p: float(p[h.index("target_rate")]), default=None)
        top = max(pts, key=lambda p: float(p[h.index("target_rate")]))
        # rate / kept relative to the unsteered model (the README tables' cell), then the absolute kept rate
        fmt = lambda p: (f"β {p[h.index('strength')]}: {100 * float(p[h.index('target_rate')]):.0f}% / "
                         f"{100 * float(p[h.index('kept_relative')] or 0):.0f}% (kept {100 * float(p[h.index('kept')]):.0f}%)")
        out.append(f"{member:48s} {method:9s} best kept≥95%: {fmt(best) if best else '-':36s} max: {fmt(top)}")
    return out


def markdown_table(rows: list[list], methods: tuple[str, ...], header: tuple[str, ...] = ABLATION_POINTS) -> str:
    """One line per member: per method, the best point that keeps ≥ KEPT of the baseline's unrelated rate
    (β: target rate / unrelated kept, relative to the baseline), and the highest target rate at any β."""
    h = list(header)
    col = lambda r, k: r[h.index(k)]
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[col(r, "member")][col(r, "method")].append(r)
    lines = ["| member | " + " | ".join(f"{m}: best at ≥ 95% kept; max" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for member, per in by.items():
        cells = []
        for m in methods:
            pts = per.get(m, [])
            if not pts:
                cells.append("")
                continue
            ok = [p for p in pts if float(col(p, "kept_relative") or 0) >= KEPT]
            fmt = lambda p: (f"β {col(p, 'strength')}: {100 * float(col(p, 'target_rate')):.0f}% / "
                             f"{100 * float(col(p, 'kept_relative')):.0f}%")
            best = max(ok, key=lambda p: (float(col(p, "target_rate")), float(col(p, "kept_relative"))), default=None)
            top = max(pts, key=lambda p: (float(col(p, "target_rate")), float(col(p, "kept_relative"))))
            cells.append(f"{fmt(best) if best else '–'}; {fmt(top)}")
        lines.append(f"| {member.split('_', 2)[-1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("lm", "t2i"), default="lm", help="which families (default: lm)")
    p.add_argument("--family", nargs="*", help="ablation families (default: every one of --kind)")
    p.add_argument("--members", nargs="*", help="preset names (default: every member of --family)")
    p.add_argument("--out", type=Path, help="points table (default: results/ablation/points.tsv, points_t2i.tsv)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the README table of --out and stop")
    p.add_argument("--rescore", action="store_true",
                   help="recompute the independent measure of every member in --out from its outputs, and stop")
    a = p.parse_args()
    header = POINTS[a.kind]
    out = a.out or ROOT / "results" / "ablation" / ("points.tsv" if a.kind == "lm" else "points_t2i.tsv")
    if a.rescore:
        rows = [[r[k] for k in header] for r in read_tsv(out, header)]
        write_tsv(out, header, rescored(rows, header, out.parent))
        return
    if a.table:
        rows = [[r[k] for k in header] for r in read_tsv(out, header)]
        for kind, methods in METHODS.items():
            print(markdown_table([r for r in rows if r[1] == kind], methods, header) + "\n")
        return
    torch.set_num_threads(a.threads)
    families = list_families(ROOT)
    members = a.members or [m for f in (a.family or FAMILIES[a.kind]) for m in families[f].members]
    rows = []
    if out.is_file():  # resume: keep the members already measured
        rows = [[r[k] for k in header] for r in read_tsv(out, header)]
    done = {r[0] for r in rows}
    for name in members:
        if name in done:
            continue
        rows += run_member(name, out.parent)
        write_tsv(out, header, rows)
    print("\n".join(best_points([r for r in rows if r[0] in members], header)))


if __name__ == "__main__":
    main()
