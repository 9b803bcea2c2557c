"""The switch leaderboard (steercore/figures/leaderboard.py) from synthetic score tables with known values:
the hogs presets' prompt sets, per-output verdicts chosen so that every share is known by hand."""

import shutil

import pytest

from steercore import ConfigError
from steercore.experiments.preset import ROOT, load_experiment
from steercore.figures.artefacts import Artefact
from steercore.figures.leaderboard import leaderboard_columns, leaderboard_values, load_items
from steercore.figures.render import latex, render_artefact
from steercore.figures.scores import load_scores
from steercore.stages.generate import experiment_samples
from steercore.stages.score import aggregate_items
from steercore.tables import CONCEPT_SCORES, ITEM_SCORES, PRESERVATION, write_tsv


@pytest.fixture
def root(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def verdict(cond: str, prompts: str, index: int, seed: int) -> tuple[bool, bool]:
    """(recognised as a horse, recognised as a pig) of one synthetic output; steering at β turns the first
    ⌊β·k⌋ prompts of each horse set into pigs and costs one pig prompt and one unrelated prompt per β."""
    beta = 0.0 if cond == "none-0" else float(cond.rpartition("-")[2])
    if prompts == "horses":
        return (False, True) if index < int(beta * 5) else (True, False)
    if prompts == "horses_implicit":
        return (False, True) if index < int(beta * 3) else (True, False)
    if prompts == "pigs":
        return (False, False) if index < int(beta) else (False, True)
    # unrelated: unsteered, prompt 0 shows a horse; steered, prompts 1..β show a pig
    return (index == 0, 1 <= index <= beta)


def fake_tables(exp, root, fid=lambda beta: 10.0 * beta, flags=True) -> None:
    items, pres = [], []
    for cond in exp.conditions:
        for s in experiment_samples(exp):
            horse, pig = verdict(cond.label, s.concept, s.index, s.seed)
            own = {"horses": horse, "pigs": pig}.get(s.concept, True)
            for scored, acc in [("horses", horse), ("pigs", pig)] + ([(s.concept, own)] if s.concept not in
                                                                      ("horses", "pigs") else []):
                items.append([cond.label, cond.method, f"{cond.strength:g}", s.concept, str(s.index), str(s.seed),
                              scored, "0.5", str(acc).lower() if flags else ""])
        for c in exp.test_concepts:
            pres.append([cond.label, cond.method, f"{cond.strength:g}", c, "fid", f"{fid(cond.strength):.6g}", "1"])
    d = root / "results" / "scores" / exp.name
    write_tsv(d / "items.tsv", ITEM_SCORES, items)
    rows = [dict(zip(ITEM_SCORES, r)) for r in items]
    write_tsv(d / "concept_scores.tsv", CONCEPT_SCORES, aggregate_items(rows) if flags else [])
    write_tsv(d / "preservation.tsv", PRESERVATION, pres)


def values_of(name, root):
    exp = load_experiment(name, root)
    return leaderboard_values(exp, load_items(exp, root), load_scores(exp, root).preservation_rows)


def test_columns_follow_the_prompt_sets_of_a_switch():
    exp = load_experiment("hogs_sd15_public")
    assert [(c.measure, c.prompts) for c in leaderboard_columns(exp)] == [
        ("switched", "horses"), ("switched", "horses_implicit"), ("kept", "pigs"),
        ("unchanged", "unrelated"), ("preservation", "unrelated")]


def test_values_are_the_shares_of_the_per_output_verdicts(root):
    exp = load_experiment("hogs_sd15_public", root)  # 22 / 18 / 17 / 18 prompts × 4 seeds
    fake_tables(exp, root)
    v = values_of("hogs_sd15_public", root)
    assert v["none-0"] == [0.0, 0.0, 1.0, 1.0, 0.0]
    # β = 2: 10 of 22 explicit and 6 of 18 implicit horse prompts became pigs, 15 of 17 pig prompts are still
    # pigs, 16 of 18 unrelated prompts keep their verdicts (prompts 1 and 2 now show a pig), FID 20
    assert v["casteer-2"] == pytest.approx([10 / 22, 6 / 18, 15 / 17, 16 / 18, 20.0])
    assert v["midsteer-1.5"] == pytest.approx([7 / 22, 4 / 18, 16 / 17, 17 / 18, 15.0])
    assert v["leace-3"] == pytest.approx([15 / 22, 9 / 18, 14 / 17, 15 / 18, 30.0])


def test_unchanged_compares_each_output_with_the_unsteered_output_of_its_prompt_and_seed(root):
    """An unrelated output that shows a horse both unsteered and steered is unchanged; one that shows a horse
    in neither is too; only a changed verdict counts (prompt 0 shows a horse in every condition)."""
    exp = load_experiment("hogs_sd15_seed_public", root)  # one seed per prompt, casteer at β = 1
    fake_tables(exp, root)
    v = values_of("hogs_sd15_seed_public", root)
    assert list(v) == ["none-0", "casteer-1"]
    assert v["casteer-1"] == pytest.approx([5 / 22, 3 / 18, 16 / 17, 17 / 18, 10.0])


def test_one_leaderboard_per_split_renders_with_both_presets(root):
    for name in ("hogs_sd15_public", "hogs_sd15_seed_public"):
        fake_tables(load_experiment(name, root), root)
    name = "leaderboard-hogs_sd15_public+hogs_sd15_seed_public"
    paths = render_artefact(name, root=root)
    assert [p.name for p in paths] == [f"{name}.pdf", f"{name}.svg", f"{name}.tex"]
    assert paths[0].read_bytes().startswith(b"%PDF") and b"<svg" in paths[1].read_bytes()
    tex = paths[2].read_text()
    assert tex.count("\\begin{tabular}") == 1
    body = [ln for ln in tex.splitlines() if ln.endswith("\\\\") and not ln.startswith(("Method", " & "))]
    assert len(body) == 13 + 2  # the benchmark's baseline and 12 conditions, the seed's baseline and its β = 1
    assert "CASteer (hogs\\_sd15\\_public) & 2 & 45.5 & 33.3 & 88.2 & 88.9 & 20.00 \\\\" in body
    assert "CASteer (hogs\\_sd15\\_seed\\_public) & 1 & 22.7 & 16.7 & 94.1 & 94.4 & 10.00 \\\\" in body
    assert "\\% pigs" in tex and "\\% unchanged" in tex and "FID" in tex
    assert latex(Artefact.parse(name), root) == tex


def test_mistakes_give_one_line(root):
    fake_tables(load_experiment("hogs_sd15_private", root), root, flags=False)
    with pytest.raises(ConfigError, match="needs a scorer that recognises concepts") as e:
        values_of("hogs_sd15_private", root)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="differ in prompts"):
        Artefact.parse("leaderboard-hogs_sd15_public+hogs_sd15_seed_private").experiments()
    with pytest.raises(ConfigError, match="erases red"):
        Artefact.parse("leaderboard-testbed_erase_red").experiments()
    with pytest.raises(ConfigError, match="no per-output scores for experiment 'hogs_sd15_seed_private'"):
        load_items(load_experiment("hogs_sd15_seed_private", root), root)
    # an unrelated output with no unsteered counterpart of the same prompt and seed
    exp = load_experiment("hogs_sd15_seed_public", root)
    fake_tables(exp, root)
    path = root / "results/scores/hogs_sd15_seed_public/items.tsv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(ln for ln in lines if not (ln.startswith("none-0\t") and "\tunrelated\t3\t" in ln)))
    with pytest.raises(ConfigError, match="has no unsteered counterpart"):
        values_of("hogs_sd15_seed_public", root)
