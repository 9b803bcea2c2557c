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

from steercore.core.errors import ConfigError
from steercore.experiments.preset import Experiment
from steercore.scorers.consistency import Consistency, bleu
from steercore.scorers.fid import fid, folder_features, kid
from steercore.scorers.registry import make_concept_scorer
from steercore.testbed.shapes import COLOURS, SHAPES
from steercore.testbed.topics import TOPICS
from steercore.tables import CONCEPT_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv

class ConceptScorers:
    """The scorer of each concept: one for all, or per concept (e.g. Detoxify for toxicity, the judge for the
    rest); each is loaded once, on first use."""

    def __init__(self, exp: Experiment, device: str):
        self.exp, self.device, self.loaded = exp, device, {}

    def name_for(self, concept: str) -> str:
        return self.exp.concept_scorer_for(concept)

    def __call__(self, concept: str):
        name = self.name_for(concept)
        if name not in self.loaded:
            self.loaded[name] = make_concept_scorer(name, device=self.device, batch_size=self.exp["batch_size"],
                                                    judge_model=self.exp["scorers"]["judge_model"])
        return self.loaded[name]


def _accuracy(scorer, items, concept: str, exp: Experiment) -> list[bool] | None:
    """Share of outputs recognised as `concept`: against the empty prompt and, for a switch, the other concept
    (CLIP); among the world's labels of the same kind (testbed)."""
    if hasattr(scorer, "accuracy"):
        other = [c for c in (exp["source"], exp["target"]) if c and c != concept]
        return scorer.accuracy(items, exp.word(concept), [""] + [exp.word(c) for c in other])
    if hasattr(scorer, "classify"):
        word = exp.word(concept)
        labels = _testbed_labels(word)
        return [lab == word for lab in scorer.classify(items, labels)]
    return None


def _testbed_labels(word: str) -> list[str]:
    """The labels a testbed concept competes with: the other colours, shapes or topics."""
    for group in (COLOURS, SHAPES, TOPICS):
        if word in group:
            return list(group)
    raise ConfigError(f"'{word}' is not a testbed colour, shape or topic")


def load_items(paths: list[Path], text: bool) -> list:
    if text:
        return [p.read_text().strip() for p in paths]
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in paths]


def score_experiment(exp: Experiment, manifest: Path, concept_out: Path, preservation_out: Path, *,
                     device: str) -> tuple[int, int]:
    """Write the two score tables; return their row counts."""
    rows = read_tsv(manifest, MANIFEST)
    base_dir = manifest.parent
    text = exp.model_kind == "lm"
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["condition"], r["concept"])].append(r)
    missing = [r["path"] for r in rows if not (base_dir / r["path"]).is_file()]
    if missing:
        raise ConfigError(f"{manifest}: {len(missing)} listed outputs are missing (first: {missing[0]}); "
                          "rerun the generate stage")
    scorers = ConceptScorers(exp, device)
    concept_rows = []
    for (cond, prompts), group in tqdm(sorted(groups.items()), desc="concept scores", unit="set"):
        items = load_items([base_dir / r["path"] for r in group], text)
        scored = [exp["source"]] + ([exp["target"]] if exp["target"] else [])
        if prompts not in scored:
            scored.append(prompts)
        for concept in scored:
            scorer = scorers(concept)
            vals = scorer.score(items, exp.word(concept))
            if len(vals) != len(items):
                raise RuntimeError(f"scorer {scorers.name_for(concept)} returned {len(vals)} scores for "
                                   f"{len(items)} items")
            acc = _accuracy(scorer, items, concept, exp)
            concept_rows.append([cond, group[0]["method"], group[0]["strength"], prompts, concept, str(len(vals)),
                                 f"{mean(vals):.6g}", f"{pstdev(vals):.6g}",
                                 "" if acc is None else f"{sum(acc) / len(acc):.6g}"])
    pres_rows = preservation_rows(exp, groups, base_dir, text=text, device=device,
                                  scorer=scorers(exp["source"]) if not text else None)
    write_tsv(concept_out, CONCEPT_SCORES, concept_rows)
    write_tsv(preservation_out, PRESERVATION, pres_rows)
    return len(concept_rows), len(pres_rows)


def preservation_rows(exp: Experiment, groups: dict, base_dir: Path, *, text: bool, device: str, scorer) -> list:
    """Images: the configured distance (fid/kid). Text: consistency (MiniLM embedding cosine) and BLEU always,
    and BERTScore P/R/F1 when preservation is bertscore."""
    metric = exp.preservation
    out = []
    consistency = make_consistency(metric, device=device) if text else None
    reference_features: dict = {}  # the unsteered images of a prompt set are featurized once
    for (cond, prompts), group in tqdm(sorted(groups.items()), desc=f"preservation ({metric})", unit="set"):
        base = {(r["index"], r["seed"]): r for r in groups[("none-0", prompts)]}
        pairs = [(base_dir / r["path"], base_dir / base[(r["index"], r["seed"])]["path"]) for r in group]
        if text:
            steered = load_items([a for a, _ in pairs], True)
            reference = load_items([b for _, b in pairs], True)
            values = {"consistency": consistency.embedding_similarity(steered, reference)}
            values["bleu"] = bleu(steered, reference)
            if metric == "bertscore":
                p, r, f = consistency.bertscore(steered, reference)
                values.update(bert_precision=p, bert_recall=r, bert_f1=f)
            values = {k: mean(v) for k, v in values.items()}
        else:
            values = {metric: image_distance(metric, base_dir / cond / prompts, base_dir / "none-0" / prompts,
                                             scorer=scorer, device=device, cache=reference_features)}
        for name, value in values.items():
            out.append([cond, group[0]["method"], group[0]["strength"], prompts, name, f"{value:.6g}", str(len(pairs))])
    return out


def image_distance(metric: str, steered: Path, reference: Path, *, scorer, device: str, cache: dict) -> float:
    """FID or KID between two folders of images; the testbed's own image encoder replaces Inception."""
    if metric not in ("fid", "kid"):
        raise ConfigError(f"preservation metric '{metric}' does not apply to images; use fid or kid")
    kw = dict(feature_extractor=scorer.features if hasattr(scorer, "features") else None, device=device,
              progress=False)
    if reference not in cache:
        cache[reference] = folder_features(reference, **kw)
    distance = fid if metric == "fid" else kid
    return distance(steered, cache[reference], **kw)


def make_consistency(metric: str, *, device: str):
    if metric not in ("consistency", "bertscore"):
        raise ConfigError(f"preservation metric '{metric}' does not apply to text; use consistency or bertscore")
    return Consistency(device=device)
