"""Experiment configs: every preset validates, bad configs fail before any job with one line naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steercore import ConfigError
from steercore.experiments.preset import ROOT, list_experiments, load_experiment
from steercore.experiments.promptsets import eval_prompts, vector_prompts

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
REAL_PRESETS = [e for e in list_experiments() if not e.startswith(("testbed_", "ci"))]


def test_every_preset_loads_with_defaults_filled():
    names = list_experiments()
    assert {"ci", "testbed_red_blue", "sdxl_dogs_cats", "llama2_horses_motorcycles", "hogs_sd15_public"} <= set(names)
    for name in names:
        exp = load_experiment(name)
        assert exp["cov"]["aggregation"] in ("all", "average", "last")
        assert exp.conditions[0].label == "none-0"
        assert len(exp.conditions) == 1 + sum(len(exp.strengths_of(m)) for m in exp["methods"])
        for concept in exp.test_concepts:
            assert eval_prompts(exp, concept), (name, concept)


def test_prompt_files_fill_the_concept_word():
    exp = load_experiment("sdxl_dogs_cats")
    assert eval_prompts(exp, "dogs")[0] == "a picture of a dog"
    assert eval_prompts(exp, "wolves")[0] == "a picture of a wolf"
    vec = vector_prompts(exp, "cats")
    assert len(vec) == 1000 and vec[0] == "a photo of a cat"


def write(tmp_path, **changes):
    cfg = yaml.safe_load((ROOT / "config/experiments/ci.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("changes,message", [
    ({"colour": "red"}, "(top level): Additional properties are not allowed ('colour' was unexpected)"),
    ({"samples_per_prompt": "four"}, "samples_per_prompt: 'four' is not of type 'integer'"),
    ({"model": "sd9"}, "model: unknown model 'sd9'; choose one of sd14, sd15"),
    ({"methods": ["midsteer", "magic"]}, "methods.1: 'magic' is not allowed; choose one of casteer, casteer_add, leace, midsteer"),
    ({"strengths": []}, "strengths: [] should be non-empty"),
    ({"strengths": [1, -2]}, "strengths.1: -2 is less than the minimum of 0"),
    ({"target": None}, "target: a switch experiment needs a target concept"),
    ({"source": "purple"}, "concept 'purple' is not in the testbed-t2i world; choose one of red, green, blue"),
    ({"prompts": {"source": {"file": "nope.txt"}, "target": ["a blue circle"]}},
     "prompts.source: prompt file 'nope.txt' does not exist"),
    ({"cov": {"aggregation": "median"}}, "cov.aggregation: 'median' is not allowed; choose one of all, average, last"),
    ({"outputs_from": "testbed_red_blue"}, "outputs_from: experiment 'testbed_red_blue' differs in strengths, prompts"),
])
def test_bad_config_gives_one_line_naming_the_key(tmp_path, changes, message):
    with pytest.raises(ConfigError) as e:
        load_experiment(write(tmp_path, **changes))
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "exp.yaml")), text
    assert message in text, text


def run_snakemake(args, cwd=ROOT, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(SNAKEMAKE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def test_bad_preset_stops_snakemake_before_any_job(tmp_path):
    for part in ("Snakefile", "rules", "config", "report", "profiles", "envs", "workflow_scripts"):
        src = ROOT / part
        subprocess.run(["cp", "-r", str(src), str(tmp_path / part)], check=True)
    bad = tmp_path / "config/experiments/ci.yaml"
    bad.write_text(bad.read_text().replace("strengths: [1, 2]", "strengths: [1, -2]"))
    res = run_snakemake(["-n", "results/pareto/ci.pdf"], cwd=tmp_path)
    assert res.returncode != 0
    err = [ln for ln in (res.stdout + res.stderr).splitlines() if "config error" in ln]
    assert err == ["Steerflow config error: config/experiments/ci.yaml: strengths.1: -2 is less than the minimum of 0"]
    assert not (tmp_path / "results").exists()


def test_every_real_preset_resolves_in_a_dry_run():
    """The paper presets need GPUs and weights; here every rule and path of their DAG must resolve."""
    targets = [f"results/pareto/{e}.pdf" for e in REAL_PRESETS]
    res = run_snakemake(["-n", *targets, "--quiet", "rules"])
    assert res.returncode == 0, res.stderr[-3000:]
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in res.stdout.splitlines()
              if len(ln.split()) == 2 and ln.split()[1].isdigit()}
    n = len(REAL_PRESETS)
    reusing = [e for e in REAL_PRESETS if load_experiment(e)["outputs_from"]]
    assert reusing == ["llama2_judge_crosscheck"]  # scores the outputs of llama2_horses_motorcycles
    # one generate and one score job per condition (issue 12); the reusing preset generates nothing itself
    jobs = {e: len(load_experiment(e).job_units()) for e in REAL_PRESETS}
    assert counts["gather_scores"] == counts["pareto"] == n and counts["score"] == sum(jobs.values()), counts
    assert counts["generate"] == sum(k for e, k in jobs.items() if e not in reusing), counts
    assert counts["cov_shard"] >= 8 and counts["cov"] >= 2 and counts["vectors"] >= 8, counts


def test_dry_run_shows_the_real_scorers():
    res = run_snakemake(["-n", "-p", "results/pareto/sdxl_dogs_cats.pdf"])
    assert res.returncode == 0, res.stderr[-2000:]
    exp = load_experiment("sdxl_dogs_cats")
    assert (exp.concept_scorer, exp.preservation) == ("clip", "fid")
    assert "results/cov/sdxl-turbo/relaion_n50000_all_step0.safetensors" in res.stdout
    assert "results/vectors/sdxl-turbo/" in res.stdout
    llm = load_experiment("llama2_horses_motorcycles")
    assert (llm.concept_scorer, llm.preservation_metric) == ("judge", "bert_precision")
    tox = load_experiment("llama2_toxicity_helpfulness")
    assert (tox.concept_scorer_for("toxicity"), tox.concept_scorer_for("helpfulness")) == ("detoxify", "judge")


def test_lint_is_clean():
    res = run_snakemake(["--lint"])
    assert res.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr, res.stdout[-3000:]
