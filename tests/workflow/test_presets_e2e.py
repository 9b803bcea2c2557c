"""Paper presets end to end on the stand-in hub (tests/standin_hub.py) at the smallest scale: every rule, the
real loading code of every model family, corpus and scorer, offline, on the CPU.

One Snakemake invocation (job start-up dominates: ~5–20 s a job here), `scale=0.0001` (every count at its
minimum), `pack=true` (one generate/score job per method). The presets are the structurally distinct ones:
SDXL with SDXL-turbo statistics on re-LAION (CLIP, FID), SD 1.5 with per-step statistics and an extra prompt set
(hogs), Llama-2 on Alpaca with Detoxify + the Llama-3.1 judge + BERTScore (toxicity), and a second judge
(Llama-3.2) scoring another preset's outputs (judge cross-check, which builds llama2_horses_motorcycles). Left
out for time, with no code path of their own: the clip twins and sdxl_erase_dogs / sdxl_violence_peace /
llama2_erase_horses (same models, corpora and scorers; erase kinds run on the testbed), hogs_sd15_private,
the covsize members. SANA is left out: SanaPipeline's default resolution binning maps any size of a
transformer with sample_size ≠ 32/64/… to a table it lacks ("Invalid sample size"), and at sample_size 32 the
tiny stand-in would decode 1024² images; tests/test_standins.py runs the SANA stand-in with an explicit size.
"""

import csv
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from checks import workflow_copy
from steercore.experiments.preset import load_experiment
from steercore.experiments.scale import scale_preset

pytestmark = pytest.mark.slow

SCALE = 0.0001
PRESETS = ["sdxl_dogs_cats", "hogs_sd15_public", "llama2_toxicity_helpfulness", "llama2_judge_crosscheck"]
PAPER = ["pareto-sdxl_dogs_cats-unrelated_preservation", "response-llama2_toxicity_helpfulness-strength"]


def _bench_seconds(results: Path) -> dict[str, float]:
    """Wall seconds of every benchmarked job, summed per experiment (statistics jobs per statistics model)."""
    out = defaultdict(float)
    for f in results.glob("benchmarks/*/**/*.tsv"):
        rel = f.relative_to(results / "benchmarks").parts  # rule, experiment or model, ...
        with open(f) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        out[rel[1].removesuffix(".tsv")] += float(row["s"])
    return dict(out)


def test_paper_presets_run_end_to_end_on_the_stand_ins(standin_hub, tmp_path):
    wf = workflow_copy(tmp_path)
    env = {**os.environ, **standin_hub.env()}
    targets = []
    for name in PRESETS:
        targets += [f"results/pareto/{name}.{s}" for s in ("pdf", "svg", "tex", "tsv", "intervals.tsv")]
        if load_experiment(name).model_kind == "t2i":
            targets.append(f"results/pareto/{name}_grid.png")
    targets += [f"results/paper/{a}.{s}" for a in PAPER for s in ("pdf", "svg", "tex")]
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *targets, "--config", "device=cpu",
                           f"scale={SCALE}", "pack=true"], cwd=wf, env=env, capture_output=True,
                          text=True, timeout=3600)
    wall = time.monotonic() - t
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    for target in targets:
        assert (wf / target).stat().st_size > 100, target
    for name in PRESETS:  # every declared output of every condition, once
        exp = scale_preset(load_experiment(name), SCALE)
        src = scale_preset(load_experiment(exp["outputs_from"]), SCALE) if exp["outputs_from"] else exp
        from steercore.experiments.promptsets import eval_prompts

        per_condition = sum(len(eval_prompts(src, c)) for c in src.test_concepts) * src["samples_per_prompt"]
        with open(wf / f"results/generate/{src.name}/manifest.tsv") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert len(rows) == per_condition * len(src.conditions), name
        assert {r["condition"] for r in rows} == {c.label for c in src.conditions}
        with open(wf / f"results/scores/{name}/concept_scores.tsv") as f:
            scored = list(csv.DictReader(f, delimiter="\t"))
        assert {r["condition"] for r in scored} == {c.label for c in exp.conditions}, name
    seconds = _bench_seconds(wf / "results")
    print(f"\nstand-in end to end: {len(PRESETS)} presets, wall {wall:.0f} s; job seconds per experiment / "
          f"statistics model: {', '.join(f'{k} {v:.0f}' for k, v in sorted(seconds.items()))}")
