"""What a preset downloads (steercore.experiments.downloads): listed, checked against the cache, fetched only
when missing. Offline against the stand-in hub (everything present) and an empty cache (each item named once)."""

from steercore.experiments.downloads import experiment_downloads, main, missing_lines, preset_downloads
from steercore.experiments.preset import list_experiments, load_experiment
from steercore.hub import Download, missing_parts

PAPER = [n for n in list_experiments() if not n.startswith(("testbed", "ci"))]


def test_every_paper_preset_is_all_cached_in_the_stand_in_hub(standins, capsys):
    assert main(["check", *PAPER]) == 0
    out = capsys.readouterr().out
    n = len(preset_downloads(PAPER))
    assert f"{n} of {n} downloads" in out and "missing" not in out


def test_empty_cache_names_each_missing_item_once_and_fails(no_caches, capsys):
    downloads = preset_downloads(PAPER)
    assert main(["check", *PAPER]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("missing:")]
    assert len(lines) == len(downloads)
    for d in downloads:
        assert sum(f" {d.name} for " in ln for ln in lines) == 1, d.name
    assert any("stabilityai/sdxl-turbo" in ln and "--include" in ln for ln in lines)
    assert main(["fetch", "sdxl_dogs_cats"]) == 1  # offline: says what it would fetch, fetches nothing
    out = capsys.readouterr().out
    assert "would fetch: stabilityai/stable-diffusion-xl-base-1.0" in out and "fetched nothing" in out


def test_sdxl_plan_takes_only_the_fp16_variant_and_marks_gated_repos(standins, capsys):
    downloads = experiment_downloads(load_experiment("sdxl_dogs_cats"))
    repos = [d.name for d in downloads]
    assert repos[:2] == ["stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/sdxl-turbo"]
    assert "laion/relaion2B-en-research" in repos and "timm/vit_base_patch32_clip_224.openai" in repos
    sdxl = downloads[0]
    assert sdxl.variant == "fp16" and "*/diffusion_pytorch_model.safetensors" in sdxl.exclude
    assert not any("vae_1_0" in p for p in sdxl.include)
    llama = preset_downloads(["llama2_toxicity_helpfulness"])
    assert {d.name for d in llama if d.gated} == {"meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-3.1-8B-Instruct"}
    assert any(d.repo_type == "url" and d.name == "toxic_original-c1212f89.ckpt" for d in llama)
    cross = {d.name for d in preset_downloads(["llama2_judge_crosscheck"])}
    assert "meta-llama/Llama-3.2-3B-Instruct" in cross and "meta-llama/Llama-3.1-8B-Instruct" not in cross
    assert main(["plan", "sdxl_dogs_cats"]) == 0
    out = capsys.readouterr().out
    assert "| fp16 |" in out and "| gated |" in out and "cached" in out and "no: " not in out


def test_a_partial_snapshot_is_missing_exactly_what_it_lacks(standin_hub, no_caches):
    import shutil

    import standin_hub as sh

    cache = no_caches / "hf"  # an empty cache of this test's own
    src = standin_hub.snapshot(sh.LLAMA2)
    tmp = no_caches / "partial_src"
    shutil.copytree(src, tmp, symlinks=False)
    shard = sorted(tmp.glob("model-*-of-*.safetensors"))[-1]
    shard.unlink()
    (tmp / "tokenizer.json").unlink()
    sh.place(cache, "steerflow-tests/partial-llama", tmp)
    d = Download("test", "steerflow-tests/partial-llama", include=("*.json", "*.safetensors"),
                 require=("config.json", "*.safetensors", "tokenizer.*"))
    missing = missing_parts(d)
    assert shard.name in missing and "tokenizer.*" in missing
    assert len(missing_lines([d])) == 1
    pipe = sh.place(cache, "steerflow-tests/partial-pipe", standin_hub.snapshot(sh.SDXL))
    (pipe / "unet" / "diffusion_pytorch_model.fp16.safetensors").unlink()
    d = Download("test", "steerflow-tests/partial-pipe", include=("model_index.json", "unet/*", "vae/*"),
                 variant="fp16")
    assert missing_parts(d) == ["unet/*.fp16.safetensors"]


def test_unknown_preset_is_one_line(capsys):
    assert main(["check", "no_such_preset"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_parameter_tables_are_the_real_configs_counts():
    """PARAMS and the scorer table hold what benchmarks/weight_sizes.py counts on the meta device (the two
    cheapest to build here; the script prints all)."""
    import importlib.util

    from steercore.experiments.downloads import SCORER_MODELS
    from steercore.experiments.preset import ROOT
    from steercore.models.registry import PARAMS

    spec = importlib.util.spec_from_file_location("weight_sizes", ROOT / "benchmarks" / "weight_sizes.py")
    ws = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ws)
    with __import__("torch").device("meta"):
        assert sum(ws._n(m) for m in ws.sd15().values()) == PARAMS["sd15"]
        assert sum(ws._n(m) for m in ws.llama2_7b().values()) == PARAMS["llama2-7b-chat"]
        assert ws._n(ws.roberta_large()["model"]) == SCORER_MODELS["bertscore"][1]
