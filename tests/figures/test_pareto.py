"""Pareto analysis: the strict frontier and the (x, y) of switch and erase experiments."""

from steercore.experiments.preset import load_experiment
from steercore.figures.pareto import Point, pareto, strict_frontier


def test_strict_frontier_keeps_only_strict_improvements():
    pts = [Point("a", 1, 1.0, 0.2), Point("b", 1, 2.0, 0.5), Point("a", 2, 3.0, 0.5), Point("b", 2, 2.5, 0.1),
           Point("c", 1, 4.0, 0.9)]
    flags = {(p.method, p.strength): p.frontier for p in strict_frontier(pts, lower_x_better=True, higher_y_better=True)}
    assert flags == {("a", 1): True, ("b", 1): True, ("a", 2): False, ("b", 2): False, ("c", 1): True}
    # erasure: lower y is better
    flags = {(p.method, p.strength): p.frontier for p in strict_frontier(pts, True, False)}
    assert flags == {("a", 1): True, ("b", 1): False, ("a", 2): False, ("b", 2): True, ("c", 1): False}


def rows(exp, score, fid):
    concept, pres = [], []
    for cond in exp.conditions:
        for prompts in exp.test_concepts:
            for scored in {exp["source"], exp["target"], prompts} - {None}:
                concept.append({"condition": cond.label, "prompts": prompts, "scored": scored,
                                "mean": str(score(cond, prompts, scored))})
            pres.append({"condition": cond.label, "prompts": prompts, "metric": "fid", "value": str(fid(cond, prompts))})
    return concept, pres


def test_switch_points_goal_and_baseline():
    exp = load_experiment("ci")  # red -> blue, unrelated: green

    def score(cond, prompts, scored):  # steering moves red prompts towards blue in proportion to β
        if prompts == "red":
            return {"red": 1.0 - 0.3 * cond.strength, "blue": 0.2 + 0.3 * cond.strength}.get(scored, 0.1)
        return 1.0 if scored == prompts else 0.1

    concept, pres = rows(exp, score, lambda cond, prompts: 10 * cond.strength if prompts == "green" else 0)
    res = pareto(exp, concept, pres)
    assert res.baseline.y == 0.2 - 1.0 and res.baseline.x == 0
    assert res.goal == 1.0 - 0.1
    mid2 = next(p for p in res.points if (p.method, p.strength) == ("midsteer", 2.0))
    assert abs(mid2.y - ((0.2 + 0.6) - (1.0 - 0.6))) < 1e-12 and mid2.x == 20
    assert res.lower_x_better and res.higher_y_better
    assert sum(p.frontier for p in res.points) == 2  # β = 1 and β = 2 of one method; ties are not kept


def test_bootstrap_intervals_are_seeded_and_contain_y():
    from steercore.experiments.preset import load_experiment
    from statistics import mean

    from steercore.figures.pareto import bootstrap_y

    exp = load_experiment("ci")
    rows = []
    for k, cond in enumerate(exp.conditions):
        for i in range(6):
            for scored, v in (("red", 0.5 - 0.1 * k + 0.01 * i), ("blue", 0.2 + 0.1 * k - 0.02 * i)):
                rows.append(dict(condition=cond.label, method=cond.method, strength=f"{cond.strength:g}",
                                 prompts="red", index=str(i), seed="0", scored=scored, score=repr(v), accepted=""))
    a, b = bootstrap_y(exp, rows, seed=3), bootstrap_y(exp, rows, seed=3)
    assert a == b and len(a) == len(exp.conditions)
    for method, strength, y, lo, hi, n in a:
        assert float(lo) <= float(y) <= float(hi) and n == "6"
    base = a[0]
    assert base[:2] == ["none", "0"] and abs(float(base[2]) - mean(0.2 - 0.02 * i - 0.5 - 0.01 * i for i in range(6))) < 1e-5
    assert bootstrap_y(exp, rows, seed=4) != a  # another seed draws other resamples
