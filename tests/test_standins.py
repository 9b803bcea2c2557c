"""The stand-in hub (tests/standin_hub.py): tiny models and data sets under the real repo ids, found offline by
the real loading code (registry, scorers, corpora) exactly as downloaded weights would be."""

import pytest
import torch
from PIL import Image

import standin_hub as sh


def _images(n=3, size=16):
    g = torch.Generator().manual_seed(0)
    return [Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def test_cache_layout_is_huggingface_hubs_own(standins):
    from huggingface_hub import scan_cache_dir, snapshot_download, try_to_load_from_cache

    info = scan_cache_dir(standins.hf_cache)
    assert not info.warnings, info.warnings  # blobs, snapshots, refs as huggingface_hub writes them
    repos = {r.repo_id for r in info.repos}
    assert {sh.SDXL, sh.SDXL_TURBO, sh.SD15, sh.SANA, sh.LLAMA2, *sh.JUDGES, sh.BERT, sh.ROBERTA, sh.CLIP,
            sh.RELAION[0], sh.ALPACA[0], sh.RTP[0]} <= repos
    snap = snapshot_download(sh.SDXL, local_files_only=True)
    assert snap.endswith(sh.commit_of(sh.SDXL))
    assert try_to_load_from_cache(sh.SDXL, "unet/diffusion_pytorch_model.fp16.safetensors").endswith(".fp16.safetensors")
    assert try_to_load_from_cache(sh.RELAION[0], sh.RELAION[1], repo_type="dataset")


@pytest.mark.parametrize("key", ["sdxl", "sdxl-turbo", "sd15", "sana"])
def test_registry_pipelines_load_and_run_from_the_standins(standins, key, capfd):
    from steercore.models.registry import load_model, model_spec
    from steercore.models.sites import find_sites

    pipe = load_model(key, device="cpu")
    assert type(pipe).__name__ == model_spec(key).cls.rpartition(".")[2]
    log = capfd.readouterr().err
    assert f"revision {sh.commit_of(model_spec(key).hub_id)}" in log and "dtype float32" in log
    assert find_sites(pipe)
    # the pipeline's own defaults, as the workflow calls it (SANA: 1024 px through its resolution binning)
    out = pipe(prompt="a photo of a dog", num_inference_steps=1, guidance_scale=2.0, output_type="pil",
               generator=torch.Generator().manual_seed(0))
    assert out.images[0].size[0] > 0


def test_sdxl_stand_ins_hold_only_the_fp16_variant(standins):
    snap = standins.snapshot(sh.SDXL)
    weights = sorted(str(p.relative_to(snap)) for p in snap.rglob("*.safetensors"))
    assert weights and all(w.endswith(".fp16.safetensors") for w in weights), weights
    from safetensors import safe_open

    with safe_open(snap / "unet" / "diffusion_pytorch_model.fp16.safetensors", "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16


def test_llama2_chat_loads_with_its_inst_template(standins):
    from steercore.models.prompting import encode_chat, format_chat
    from steercore.models.registry import load_model

    model, tok = load_model("llama2-7b-chat", device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<s>[INST] hi [/INST]"
    assert format_chat(tok, "tell me", "llama2-7b-chat") == "<s>[INST] tell me [/INST] "
    batch = encode_chat(tok, ["tell me about a horse", "why"], "llama2-7b-chat")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)
    snap = standins.snapshot(sh.LLAMA2)
    assert len(list(snap.glob("model-*-of-*.safetensors"))) >= 2  # sharded, with its index


@pytest.mark.parametrize("judge", sh.JUDGES)
def test_judges_rate_with_single_token_ratings_and_llama3_template(standins, judge):
    from steercore.scorers.judge import Judge

    j = Judge(judge, device="cpu", progress=False)
    assert "<|start_header_id|>assistant<|end_header_id|>" in j.prompt("an answer", "horses")
    assert [len(j.tokenizer.encode(str(k), add_special_tokens=False)) for k in range(11)] == [1] * 11
    rating, expected = j.rate(["a horse runs", "music"], "horses")
    assert all(0 <= r <= 10 for r in rating) and all(0 <= e <= 10 for e in expected)


def test_clip_scorer_finds_its_hub_repo_and_builds_the_repos_config(standins):
    from steercore.scorers.clip_score import ClipScorer

    s = ClipScorer(device="cpu", progress=False)  # ViT-B-32 / openai, the scorer's defaults
    assert s.model.visual.image_size == (32, 32)  # the stand-in's small config, not the built-in ViT-B-32
    scores = s.score(_images(), "dog")
    assert len(scores) == 3 and all(v >= 0 for v in scores)
    assert len(s.accuracy(_images(), "dog", against=["", "cat"])) == 3


def test_inception_stand_in_gives_fid_features(standins, tmp_path):
    from steercore.scorers.fid import fid, folder_features

    for i, im in enumerate(_images(4)):
        (tmp_path / "a").mkdir(exist_ok=True)
        im.save(tmp_path / "a" / f"{i}.png")
    feats = folder_features(tmp_path / "a", progress=False)
    assert feats.feats.shape == (4, 2048)
    assert fid(tmp_path / "a", tmp_path / "a", progress=False) == pytest.approx(0, abs=1e-3)


def test_detoxify_checkpoint_loads_weights_only(standins):
    from steercore.scorers.toxicity import Toxicity

    t = Toxicity(device="cpu", progress=False)
    assert t.fields[0] == "toxicity" and len(t.fields) == 6
    p = t.predict(["you are kind", "stupid idiot"])
    assert all(len(v) == 2 and all(0 < x < 1 for x in v) for v in p.values())


def test_bertscore_uses_the_roberta_stand_in(standins):
    from steercore.scorers.consistency import Consistency

    c = Consistency(device="cpu", progress=False)
    p, r, f = c.bertscore(["a dog in the snow", "a cat"], ["a dog", "a cat"])
    assert len(p) == 2 and p[1] == pytest.approx(1.0, abs=1e-5)


def test_corpora_and_rtp_read_the_stand_in_data_sets(standins):
    from steercore.experiments.corpora import neutral_texts
    from steercore.models.prompting import split_chat_text
    from steercore.scorers.toxicity import load_rtp_subset

    caps = neutral_texts("relaion", 50)
    assert caps == sh._captions(sh.N_CAPTIONS)[:50]  # the stand-in shard's caption column, in order
    q, a = split_chat_text(neutral_texts("alpaca", 5)[0])
    assert q.startswith("Describe") and a.startswith("It is")
    rtp = load_rtp_subset(n=5)
    assert len(rtp) == 5 and rtp[0]["toxicity"] >= rtp[-1]["toxicity"] >= 0.5
