"""The score stage: concept scores of the conditions of one job on every prompt set, and preservation.

Concept scores: each output of condition c on prompt set p is scored against the source concept, the target
(switch) and p's own concept; the job keeps every per-output score (ITEM_SCORES) and the gather step
(stages/gather.py) aggregates them into mean, std and accuracy per (c, p, scored concept). Preservation
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
from steercore.scorers.fid import FeatureSet, fid, folder_features, kid
from steercore.scorers.registry import make_concept_scorer
from steercore.testbed.shapes import COLOURS, SHAPES
from steercore.testbed.topics import TOPICS
from steercore.tables import ITEM_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv

BASELINE_LABEL = "none-0"


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


def read_manifests(paths: list[Path]) -> list[dict]:
    return [r for p in paths for r in read_tsv(p, MANIFEST)]


def score_unit(exp: Experiment, conditions: list[str], manifests: list[Path], base_dir: Path, items_out: Path,
               preservation_out: Path, *, device: str, reference: Path | None = None) -> tuple[int, int]:
    """Score the outputs of `conditions` (labels) listed in `manifests` (paths relative to the generating
    experiment's folder `base_dir`, which also holds the baseline `none-0`): one row per output and scored
    concept (ITEM_SCORES), and preservation per condition × prompt set against the baseline. `reference`:
    the folder of the baseline's image features (baseline_features), read instead of featurizing again.
    Returns the two row counts."""
    rows = read_manifests(manifests)
    text = exp.model_kind == "lm"
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["condition"] in conditions or r["condition"] == BASELINE_LABEL:
            groups[(r["condition"], r["concept"])].append(r)
    absent = sorted(set(conditions) - {c for c, _ in groups})
    if absent:
        raise ConfigError(f"{manifests[0]}: lists no outputs of {', '.join(absent)}; rerun the generate stage")
    missing = [r["path"] for g in groups.values() for r in g if not (base_dir / r["path"]).is_file()]
    if missing:
        raise ConfigError(f"{base_dir}: {len(missing)} listed outputs are missing (first: {missing[0]}); "
                          "rerun the generate stage")
    mine = {k: g for k, g in groups.items() if k[0] in conditions}
    scorers = ConceptScorers(exp, device)
    item_rows = []
    for (cond, prompts), group in tqdm(sorted(mine.items()), desc="concept scores", unit="set"):
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
            for k, (r, v) in enumerate(zip(group, vals)):
                item_rows.append([cond, r["method"], r["strength"], prompts, r["index"], r["seed"], concept,
                                  repr(float(v)), "" if acc is None else str(bool(acc[k])).lower()])
    pres_rows = preservation_rows(exp, groups, base_dir, text=text, device=device, conditions=conditions,
                                  scorer=scorers(exp["source"]) if not text else None, reference=reference)
    write_tsv(items_out, ITEM_SCORES, item_rows)
    write_tsv(preservation_out, PRESERVATION, pres_rows)
    return len(item_rows), len(pres_rows)


def aggregate_items(item_rows: list[dict]) -> list[list]:
    """CONCEPT_SCORES rows from ITEM_SCORES rows: n, mean, std and accuracy per condition × prompt set ×
    scored concept, sorted by (condition, prompt set) as the per-experiment job wrote them."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in item_rows:
        groups.setdefault((r["condition"], r["prompts"], r["scored"]), []).append(r)
    out = []
    for (cond, prompts, concept), group in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        vals = [float(r["score"]) for r in group]
        acc = [r["accepted"] for r in group]
        accuracy = "" if "" in acc else f"{sum(a == 'true' for a in acc) / len(acc):.6g}"
        out.append([cond, group[0]["method"], group[0]["strength"], prompts, concept, str(len(vals)),
                    f"{mean(vals):.6g}", f"{pstdev(vals):.6g}", accuracy])
    return out


def baseline_features(exp: Experiment, manifests: list[Path], base_dir: Path, out_dir: Path, *,
                      device: str) -> int:
    """Image features of the baseline's outputs, one `<prompt set>.npz` per prompt set under `out_dir`, for
    every condition's FID/KID. Returns the number of prompt sets."""
    if exp.model_kind == "lm":
        raise ConfigError(f"experiment {exp.name}: text experiments have no image features")
    concepts = sorted({r["concept"] for r in read_manifests(manifests) if r["condition"] == BASELINE_LABEL})
    scorer = ConceptScorers(exp, device)(exp["source"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for c in concepts:
        folder_features(base_dir / BASELINE_LABEL / c, **_feature_kw(scorer, device)).save(out_dir / f"{c}.npz")
    return len(concepts)


def _feature_kw(scorer, device: str) -> dict:
    return dict(feature_extractor=scorer.features if hasattr(scorer, "features") else None, device=device,
                progress=False)


def preservation_rows(exp: Experiment, groups: dict, base_dir: Path, *, text: bool, device: str, scorer,
                      conditions: list[str], reference: Path | None = None) -> list:
    """Images: the configured distance (fid/kid). Text: consistency (MiniLM embedding cosine) and BLEU always,
    and BERTScore P/R/F1 when preservation is bertscore."""
    metric = exp.preservation
    out = []
    consistency = make_consistency(metric, device=device) if text else None
    reference_features: dict = {}  # the unsteered images of a prompt set are featurized once
    mine = {k: g for k, g in groups.items() if k[0] in conditions}
    for (cond, prompts), group in tqdm(sorted(mine.items()), desc=f"preservation ({metric})", unit="set"):
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
            ref = reference / f"{prompts}.npz" if reference is not None else base_dir / BASELINE_LABEL / prompts
            values = {metric: image_distance(metric, base_dir / cond / prompts, ref, scorer=scorer, device=device,
                                             cache=reference_features)}
        for name, value in values.items():
            out.append([cond, group[0]["method"], group[0]["strength"], prompts, name, f"{value:.6g}", str(len(pairs))])
    return out


def image_distance(metric: str, steered: Path, reference: Path, *, scorer, device: str, cache: dict) -> float:
    """FID or KID between two folders of images; the testbed's own image encoder replaces Inception."""
    if metric not in ("fid", "kid"):
        raise ConfigError(f"preservation metric '{metric}' does not apply to images; use fid or kid")
    kw = _feature_kw(scorer, device)
    if reference not in cache:
        cache[reference] = FeatureSet.load(reference) if reference.suffix == ".npz" else folder_features(reference, **kw)
    distance = fid if metric == "fid" else kid
    return distance(steered, cache[reference], **kw)


def make_consistency(metric: str, *, device: str):
    if metric not in ("consistency", "bertscore"):
        raise ConfigError(f"preservation metric '{metric}' does not apply to text; use consistency or bertscore")
    return Consistency(device=device)
