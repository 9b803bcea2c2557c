"""Per-job tables gathered into an experiment's tables; concept scores aggregated from per-output scores."""

from statistics import mean, pstdev

import pytest

from steercore.core.errors import ConfigError
from steercore.experiments.preset import load_experiment
from steercore.stages.gather import gather_manifest, gather_scores
from steercore.stages.score import aggregate_items
from steercore.tables import CONCEPT_SCORES, ITEM_SCORES, MANIFEST, PRESERVATION, read_tsv, write_tsv


def item(cond, prompts, index, scored, score, accepted="true"):
    method, _, strength = cond.rpartition("-")
    return dict(zip(ITEM_SCORES, [cond, method, strength, prompts, str(index), "0", scored, repr(score), accepted]))


def test_aggregates_keep_full_precision_and_the_per_experiment_order():
    vals = [0.1, 0.2, 0.7000000000000001]
    rows = [item("none-0", "red", i, "red", v, "true" if v > 0.15 else "false") for i, v in enumerate(vals)]
    rows += [item("casteer-2", "red", 0, "red", 0.5, "")]
    out = aggregate_items(rows)
    assert [r[0] for r in out] == ["casteer-2", "none-0"]  # sorted by (condition, prompt set) as before
    assert out[1] == ["none-0", "none", "0", "red", "red", "3", f"{mean(vals):.6g}", f"{pstdev(vals):.6g}",
                      f"{2 / 3:.6g}"]
    assert out[0][-1] == ""  # a scorer without a recognition test has no accuracy


def test_gathered_manifest_is_in_condition_order_and_complete(tmp_path):
    exp = load_experiment("ci")
    jobs = {}
    for cond in reversed(exp.conditions):  # written in any order
        path = tmp_path / cond.label / "manifest.tsv"
        write_tsv(path, MANIFEST, [[cond.label, cond.method, f"{cond.strength:g}", "red", 0, 0, "p",
                                    f"{cond.label}/red/000-0.png"]])
        jobs[cond.label] = path
    n = gather_manifest(exp, list(jobs.values()), tmp_path / "manifest.tsv")
    assert n == len(exp.conditions)
    assert [r["condition"] for r in read_tsv(tmp_path / "manifest.tsv", MANIFEST)] == [c.label for c in exp.conditions]
    with pytest.raises(ConfigError, match="no rows for conditions casteer-1"):
        gather_manifest(exp, [p for c, p in jobs.items() if c != "casteer-1"], tmp_path / "other.tsv")


def test_gathered_scores_aggregate_every_job(tmp_path):
    exp = load_experiment("ci")
    items, pres = [], []
    for cond in exp.conditions:
        d = tmp_path / cond.label
        write_tsv(d / "items.tsv", ITEM_SCORES, [list(item(cond.label, "red", i, "red", 0.25 * i).values())
                                                 for i in range(2)])
        write_tsv(d / "preservation.tsv", PRESERVATION, [[cond.label, cond.method, f"{cond.strength:g}", "green",
                                                          "fid", "1.5", "2"]])
        items.append(d / "items.tsv")
        pres.append(d / "preservation.tsv")
    counts = gather_scores(exp, items, pres, items_out=tmp_path / "items.tsv", concept_out=tmp_path / "c.tsv",
                           preservation_out=tmp_path / "p.tsv")
    assert counts == (2 * len(exp.conditions), len(exp.conditions), len(exp.conditions))
    concept = read_tsv(tmp_path / "c.tsv", CONCEPT_SCORES)
    assert {r["mean"] for r in concept} == {"0.125"} and {r["n"] for r in concept} == {"2"}
    assert [r["condition"] for r in read_tsv(tmp_path / "p.tsv", PRESERVATION)] == sorted(c.label for c in exp.conditions)
