"""The score stage: concept scores of every condition on every prompt set, and preservation.

Concept scores: each output of condition c on prompt set p is scored against the source concept, the target
(switch) and p's own concept; the table keeps mean, std and accuracy per (c, p, scored concept). Preservation
compares c's outputs on p with the unsteered outputs of the same prompts and seeds: FID (or KID) for images,
consistency (mean embedding similarity of paired answers) for text.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean, pstdev

from tqdm.auto import tqdm

from .errors import ConfigError
from .experiment import Experiment
from .files import write_text_atomic
from .pareto import CONCEPT_HEADER, PRESERVATION_HEADER, read_tsv

CONCEPT_SCORERS = ("testbed-clip", "testbed-topics", "clip", "judge", "detoxify")


def make_concept_scorer(name: str, *, device: str, batch_size: int):
    """The concept scorer by name; each has score(items, concept) -> list[float]."""
    if name == "testbed-clip":
        from .testbed.scorers import TestbedImageScorer

        return TestbedImageScorer(device=device)
    if name == "testbed-topics":
        from .testbed.scorers import TopicScorer

        return TopicScorer()
    if name == "clip":
        from .scorers.clip_score import ClipScorer

        return ClipScorer(device=device, batch_size=batch_size)
    if name == "judge":
        from .scorers.judge import JudgeScorer

        return JudgeScorer(device=device, batch_size=batch_size)
    if name == "detoxify":
        from .scorers.toxicity import ToxicityScorer

        return ToxicityScorer(device=device, batch_size=batch_size)
    raise ConfigError(f"unknown concept scorer '{name}'; choose one of {', '.join(CONCEPT_SCORERS)}")


def _accuracy(scorer, items, concept: str, exp: Experiment) -> list[bool] | None:
    """Share of outputs recognised as `concept`: against the empty prompt and, for a switch, the other concept
    (CLIP); among the world's labels of the same kind (testbed)."""
    if hasattr(scorer, "accuracy"):
        other = [c for c in (exp["source"], exp["target"]) if c and c != concept]
        return scorer.accuracy(items, exp.word(concept), [""] + [exp.word(c) for c in other])
    if hasattr(scorer, "classify"):
        labels = scorer.labels_like(exp.word(concept))
        return [lab == exp.word(concept) for lab in scorer.classify(items, labels)]
    return None


def load_items(paths: list[Path], text: bool) -> list:
    if text:
        return [p.read_text().strip() for p in paths]
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in paths]


def score_experiment(exp: Experiment, manifest: Path, concept_out: Path, preservation_out: Path, *,
                     device: str) -> tuple[int, int]:
    """Write the two score tables; return their row counts."""
    rows = read_tsv(manifest)
    base_dir = manifest.parent
    text = exp.model_kind == "lm"
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["condition"], r["concept"])].append(r)
    missing = [r["path"] for r in rows if not (base_dir / r["path"]).is_file()]
    if missing:
        raise ConfigError(f"{manifest}: {len(missing)} listed outputs are missing (first: {missing[0]}); "
                          "rerun the generate stage")
    scorer = make_concept_scorer(exp.concept_scorer, device=device, batch_size=exp["batch_size"])
    concept_rows = []
    items_of = {}
    for (cond, prompts), group in tqdm(sorted(groups.items()), desc="concept scores", unit="set"):
        items = load_items([base_dir / r["path"] for r in group], text)
        items_of[(cond, prompts)] = [(r["index"], r["seed"]) for r in group]
        scored = [exp["source"]] + ([exp["target"]] if exp["target"] else [])
        if prompts not in scored:
            scored.append(prompts)
        for concept in scored:
            vals = scorer.score(items, exp.word(concept))
            if len(vals) != len(items):
                raise RuntimeError(f"scorer {exp.concept_scorer} returned {len(vals)} scores for {len(items)} items")
            acc = _accuracy(scorer, items, concept, exp)
            concept_rows.append([cond, group[0]["method"], group[0]["strength"], prompts, concept, str(len(vals)),
                                 f"{mean(vals):.6g}", f"{pstdev(vals):.6g}",
                                 "" if acc is None else f"{sum(acc) / len(acc):.6g}"])
    pres_rows = preservation_rows(exp, groups, base_dir, text=text, device=device, scorer=scorer)
    _write(concept_out, CONCEPT_HEADER, concept_rows)
    _write(preservation_out, PRESERVATION_HEADER, pres_rows)
    return len(concept_rows), len(pres_rows)


def preservation_rows(exp: Experiment, groups: dict, base_dir: Path, *, text: bool, device: str, scorer) -> list:
    metric = exp.preservation
    out = []
    if text:
        sim = make_consistency(metric, device=device)
    for (cond, prompts), group in tqdm(sorted(groups.items()), desc=f"preservation ({metric})", unit="set"):
        base = {(r["index"], r["seed"]): r for r in groups[("none-0", prompts)]}
        pairs = [(base_dir / r["path"], base_dir / base[(r["index"], r["seed"])]["path"]) for r in group]
        if text:
            steered = load_items([a for a, _ in pairs], True)
            reference = load_items([b for _, b in pairs], True)
            value = mean(sim(steered, reference))
        else:
            value = image_distance(metric, base_dir / cond / prompts, base_dir / "none-0" / prompts,
                                   scorer=scorer, device=device)
        out.append([cond, group[0]["method"], group[0]["strength"], prompts, metric, f"{value:.6g}", str(len(pairs))])
    return out


def image_distance(metric: str, steered: Path, reference: Path, *, scorer, device: str) -> float:
    """FID or KID between two folders of images; the testbed's own image encoder replaces Inception."""
    from .scorers import fid as fid_mod

    extractor = scorer.features if hasattr(scorer, "features") else None
    if metric == "fid":
        return fid_mod.fid(steered, reference, feature_extractor=extractor, device=device)
    if metric == "kid":
        return fid_mod.kid(steered, reference, feature_extractor=extractor, device=device)
    raise ConfigError(f"preservation metric '{metric}' does not apply to images; use fid or kid")


def make_consistency(metric: str, *, device: str):
    """A function (answers, reference answers) -> per-pair similarity in [0, 1]-ish (1 = identical)."""
    if metric != "consistency":
        raise ConfigError(f"preservation metric '{metric}' does not apply to text; use consistency")
    from .scorers.consistency import MiniLMSimilarity

    model = MiniLMSimilarity(device=device)
    return model.similarity


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    write_text_atomic(path, "".join("\t".join(r) + "\n" for r in [header, *rows]))
