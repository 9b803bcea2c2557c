"""The score stage on hand-made outputs with a fake scorer: fast, and every number is known in advance."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from steercore.core.errors import ConfigError
from steercore.experiments.preset import load_experiment
from steercore.scorers.registry import CONCEPT_SCORERS, ScorerSpec
from steercore.stages.score import aggregate_items, score_unit
from steercore.tables import ITEM_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}
CHANNEL = {"red": 0, "green": 1, "blue": 2}


class ChannelScorer:
    """Scores an image for a colour by the mean of that colour's channel (0..1); its features are mean RGB."""

    def features(self, images):
        return torch.tensor(np.stack([np.asarray(im, dtype=np.float64).mean((0, 1)) / 255 for im in images]))

    def score(self, images, concept):
        return self.features(images)[:, CHANNEL[concept]].tolist()

    def classify(self, images, labels):
        feats = self.features(images)
        return [max((lab for lab in labels if lab in CHANNEL), key=lambda lab: f[CHANNEL[lab]]) for f in feats]


@pytest.fixture
def fake_scorer(monkeypatch):
    monkeypatch.setitem(CONCEPT_SCORERS, "channels", ScorerSpec("channels", "image", lambda **kw: ChannelScorer()))


def make_run(tmp_path: Path, switched: dict[str, str]) -> tuple[object, Path]:
    """An experiment (red → blue, unrelated green) and a manifest of solid-colour images: the baseline draws each
    prompt set's own colour; midsteer-1 draws `switched[concept]` instead."""
    preset = {"model": "testbed-t2i", "kind": "switch", "source": "red", "target": "blue", "methods": ["midsteer"],
              "strengths": [1], "samples_per_prompt": 2,
              "prompts": {"source": {"generator": "testbed-shapes", "n": 2},
                          "target": {"generator": "testbed-shapes", "n": 2},
                          "unrelated": {"green": {"generator": "testbed-shapes", "n": 2}}},
              "scorers": {"concept": "channels"}}
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(preset))
    exp = load_experiment(path)
    out = tmp_path / "generate"
    rows = []
    for cond, method, strength in (("none-0", "none", "0"), ("midsteer-1", "midsteer", "1")):
        for concept in ("red", "blue", "green"):
            colour = switched.get(concept, concept) if method == "midsteer" else concept
            for index in range(2):
                for seed in (0, 1):
                    rel = Path(cond) / concept / f"{index:03d}-{seed}.png"
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (8, 8), COLOURS[colour]).save(out / rel)
                    rows.append((cond, method, strength, concept, index, seed, f"a {concept} thing", rel))
    write_tsv(out / "manifest.tsv", MANIFEST, rows)
    return exp, out / "manifest.tsv"


def score(exp, manifest, tmp_path):
    """Both conditions' score jobs, as the workflow runs them: per-output rows and preservation."""
    return score_unit(exp, ["none-0", "midsteer-1"], [manifest], manifest.parent, tmp_path / "items.tsv",
                      tmp_path / "p.tsv", device="cpu")


def test_concept_scores_accuracy_and_preservation(tmp_path, fake_scorer):
    exp, manifest = make_run(tmp_path, switched={"red": "blue"})
    n_items, n_pres = score(exp, manifest, tmp_path)
    items = read_tsv(tmp_path / "items.tsv", ITEM_SCORES)
    pres = read_tsv(tmp_path / "p.tsv", PRESERVATION)
    assert (n_items, n_pres) == (len(items), len(pres)) == (2 * (2 + 2 + 3) * 4, 2 * 3)  # 4 outputs per set
    concept = [dict(zip(("condition", "method", "strength", "prompts", "scored", "n", "mean", "std", "accuracy"), r))
               for r in aggregate_items(items)]
    assert len(concept) == 2 * (2 + 2 + 3)
    row = {(r["condition"], r["prompts"], r["scored"]): r for r in concept}
    assert all(r["n"] == "4" for r in concept)
    steered_red = row[("midsteer-1", "red", "blue")]  # red prompts now draw blue: switched
    assert (float(steered_red["mean"]), float(steered_red["accuracy"])) == (1.0, 1.0)
    assert float(row[("midsteer-1", "red", "red")]["mean"]) == 0.0
    assert float(row[("none-0", "red", "red")]["accuracy"]) == 1.0
    assert float(row[("none-0", "green", "blue")]["accuracy"]) == 0.0
    assert row[("none-0", "green", "green")]["std"] == "0"
    fid = {(r["condition"], r["prompts"]): float(r["value"]) for r in pres}
    assert {r["metric"] for r in pres} == {"fid"} and all(r["n"] == "4" for r in pres)
    assert fid[("none-0", "red")] == pytest.approx(0, abs=1e-9)  # the baseline against itself
    assert fid[("midsteer-1", "green")] == pytest.approx(0, abs=1e-9)  # unrelated prompts untouched
    assert fid[("midsteer-1", "red")] == pytest.approx(2.0, abs=1e-6)  # |(1,0,0) − (0,0,1)|² in feature space


def test_missing_outputs_are_named_in_one_line(tmp_path, fake_scorer):
    exp, manifest = make_run(tmp_path, switched={})
    (manifest.parent / "midsteer-1" / "green" / "001-1.png").unlink()
    with pytest.raises(ConfigError, match=r"1 listed outputs are missing \(first: midsteer-1/green/001-1.png\)") as e:
        score(exp, manifest, tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "items.tsv").exists()


def test_a_scorer_that_drops_items_is_caught(tmp_path, monkeypatch):
    class Dropping(ChannelScorer):
        def score(self, images, concept):
            return super().score(images, concept)[:-1]

    monkeypatch.setitem(CONCEPT_SCORERS, "channels", ScorerSpec("channels", "image", lambda **kw: Dropping()))
    exp, manifest = make_run(tmp_path, switched={})
    with pytest.raises(RuntimeError, match="returned 3 scores for 4 items"):
        score(exp, manifest, tmp_path)
