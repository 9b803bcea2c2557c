"""The `scale` knob (steercore/experiments/scale.py): a scaled preset keeps its structure and shrinks its
counts, scale 1 changes nothing, a bad scale is one line, and the scaled DAG has the same jobs."""

import os
import re
import subprocess
import sys

import pytest

from steercore import ConfigError
from steercore.experiments import preset
from steercore.experiments.preset import ROOT, Condition, configure, list_experiments, load_experiment
from steercore.experiments.promptsets import eval_prompts
from steercore.experiments.scale import check_scale, scale_preset, scaled_count
from steercore.experiments.workflow_config import check_config

# what an experiment is: a scaled preset keeps all of it
STRUCTURE = ("model", "stats_model", "kind", "source", "target", "words", "methods", "strengths", "llm_site",
             "scorers", "pareto", "outputs_from", "clip", "renormalize", "identity_cov", "zero_mu", "only_up",
             "generated_only", "seed", "guidance", "temperature", "batch_size", "pack")


@pytest.fixture
def settings():
    """configure() freely: the workflow settings are restored afterwards."""
    saved = dict(preset.SETTINGS)
    yield
    preset.SETTINGS.update(saved)


@pytest.fixture
def scaled(settings):
    """Every preset, loaded at a scale."""

    def at(factor):
        configure({"scale": factor})
        return {name: load_experiment(name) for name in list_experiments()}

    return at


def counts(exp) -> dict:
    c = exp.cfg
    out = {"samples_per_prompt": c["samples_per_prompt"], "cov.samples": c["cov"]["samples"],
           "vectors.samples": c["vectors"]["samples"], "max_new_tokens": c["max_new_tokens"],
           **{f"prompts.{k}": len(eval_prompts(exp, k)) for k in exp.test_concepts}}
    if exp.model_kind == "t2i":
        from steercore.models.registry import resolve_spec

        out["steps"] = c["steps"] or resolve_spec(c["model"]).steps
    return out


def test_a_scaled_preset_keeps_its_structure_and_shrinks_its_counts(scaled):
    full, small = scaled(1), scaled(0.01)
    assert list(full) == list(small)
    shrunk = set()
    for name, exp in full.items():
        tiny = small[name]
        assert {k: tiny.cfg[k] for k in STRUCTURE} == {k: exp.cfg[k] for k in STRUCTURE}, name
        assert tiny.conditions == exp.conditions and tiny.test_concepts == exp.test_concepts, name
        assert tiny.job_units() == exp.job_units() and tiny.concepts == exp.concepts, name
        assert tiny["cov"]["shards"] == exp["cov"]["shards"] and (tiny.twin_of, tiny.family) == (exp.twin_of, exp.family)
        assert set(tiny["prompts"]) == set(exp["prompts"]) and all(
            set(tiny["prompts"][g]) == set(exp["prompts"][g]) for g in ("unrelated", "extra"))
        big, few = counts(exp), counts(tiny)
        for key, n in big.items():
            assert few[key] == max(scaled_count(n, 0.01), few[key]) and few[key] <= n, (name, key, n, few[key])
            shrunk |= {key} if few[key] < n else set()
        assert few["cov.samples"] >= max(2, exp["cov"]["shards"]) and few["vectors.samples"] >= 2
        # FID/KID need two images per prompt set: two prompts of every set, and two samples unless the preset
        # asks for one (scaling never raises a count)
        two = exp.model_kind == "t2i" and exp.preservation in ("fid", "kid")
        one_sample = exp.model_kind == "t2i" and exp["samples_per_prompt"] == 1
        assert few["samples_per_prompt"] == (1 if one_sample or exp.model_kind != "t2i" else 2), name
        assert all(v == min(2 if two else 1, big[k]) for k, v in few.items() if k.startswith("prompts.")), (name, few)
        assert tiny.scale == 0.01 and exp.scale == 1
    assert shrunk == {"samples_per_prompt", "cov.samples", "vectors.samples", "max_new_tokens", "steps"} | {
        k for k in shrunk if k.startswith("prompts.")}
    sdxl = small["sdxl_dogs_cats"]
    assert (sdxl["steps"], sdxl["samples_per_prompt"], sdxl["cov"]["samples"], sdxl["vectors"]["samples"]) == (1, 2, 500, 10)
    assert sdxl["prompts"]["source"] == {"file": "config/prompts/t2i_eval.txt", "limit": 2}
    assert len(eval_prompts(sdxl, "dogs")) == 2 and eval_prompts(sdxl, "dogs")[0] == "a picture of a dog"


def test_a_scaled_run_never_reuses_full_size_outputs_or_statistics(scaled):
    full, small = scaled(1), scaled(0.5)
    for name in ("ci", "sdxl_dogs_cats", "llama2_horses_motorcycles"):
        a, b = full[name], small[name]
        for cond in (Condition("none", 0.0), a.conditions[-1]):
            assert a.generation_digest(cond) != b.generation_digest(cond)
            assert a.scoring_digest(cond) != b.scoring_digest(cond)
        assert a.cov_path() != b.cov_path() and b.cov_id().endswith("_x0p5")
        assert a.vectors_path(a["source"]) != b.vectors_path(b["source"])


def test_scale_1_is_the_identity(scaled):
    exp = load_experiment("sdxl_dogs_cats")
    assert scale_preset(exp, 1) is exp and scale_preset(exp, 1.0) is exp
    full = scaled(1)
    for name, one in full.items():
        default = load_experiment(name)
        assert one.cfg == default.cfg and one.scale == 1
        cond = one.conditions[-1]
        assert one.generation_digest(cond) == default.generation_digest(cond) and one.cov_id() == default.cov_id()
    # scale 1 keeps the digests of before the knob existed (no rerun of existing results)
    assert "scale" not in exp.generation_settings(exp.conditions[-1])


def test_rounding_is_up_and_never_below_the_minimum():
    assert [scaled_count(n, 0.07) for n in (100, 1, 14)] == [7, 1, 1]
    assert scaled_count(50000, 0.01, 8) == 500 and scaled_count(100, 0.01, 8) == 8
    assert scaled_count(3, 0.5) == 2


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), float("inf"), "small", True, None])
def test_a_bad_scale_is_refused_in_one_line(bad):
    with pytest.raises(ConfigError) as e:
        scale_preset(load_experiment("ci"), bad)
    assert str(e.value).startswith(f"scale: {bad!r} is not a number in (0, 1]") and "\n" not in str(e.value)
    if bad is None:
        return
    with pytest.raises(SystemExit) as e:
        check_config({"scale": bad})
    assert str(e.value.code) == f"Steerflow config error: config/config.yaml: scale: {bad!r} is not a number in (0, 1]; " \
                                "it multiplies every count of a preset (1 = full size, e.g. 0.01 for a rehearsal)"
    assert check_scale(0.25) == 0.25 and check_scale(1) == 1.0


def dry_run_jobs(*args) -> tuple[list[tuple[str, str]], str]:
    """(rule, wildcards other than the statistics ids) of every job `snakemake -n` lists, and its output."""
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            wildcards = re.search(r"wildcards: (.*)", block)
            kept = [w for w in (wildcards[1].split(", ") if wildcards else []) if not w.startswith(("covid=", "vecid="))]
            jobs.append((rule[1], ", ".join(kept)))
    return sorted(jobs), res.stdout


def test_the_scaled_dag_lists_the_same_jobs():
    target = "results/pareto/sdxl_dogs_cats.pdf"
    full, full_listing = dry_run_jobs(target)
    assert len([j for j in full if j[0] == "generate"]) == 22 and "_x0p01" not in full_listing
    small, listing = dry_run_jobs(target, "--config", "scale=0.01")
    assert small == full
    assert "results/cov/sdxl-turbo/relaion_n500_all_step0_x0p01.safetensors" in listing  # the scale did apply
