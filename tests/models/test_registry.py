"""The model registry: specs, loading from local folders, fast offline errors; chat prompt formats."""

import time

import pytest
import torch

import tiny_models as tm
from steercore.models import registry
from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.models.prompting import encode_chat, format_chat
from steercore.models.registry import MODELS, load_model, model_spec

KEYS = ["sd14", "sd15", "sd21", "sdxl", "sdxl-turbo", "sana", "sana-sprint", "pixart", "flux", "flux-schnell",
        "llama2-7b-chat", "qwen2.5-7b", "qwen2.5-14b", "gemma2-2b", "testbed-t2i", "testbed-lm"]


def test_every_keyword_has_a_complete_spec():
    assert set(KEYS) <= set(MODELS)
    for key in KEYS:
        spec = model_spec(key)
        assert spec.kind in ("t2i", "lm") and spec.dtype in ("float16", "bfloat16", "float32")
        assert (spec.hub_id is None) == key.startswith("testbed")
        assert registry._import(spec.cls).__name__ == spec.cls.rsplit(".", 1)[1]  # the class path resolves
        if spec.kind == "t2i":
            assert spec.steps >= 1 and spec.guidance is not None
    assert model_spec("sdxl-turbo").steps == 1 and model_spec("sdxl-turbo").guidance == 0.0
    assert model_spec("flux").hub_id == "black-forest-labs/FLUX.1-dev" and model_spec("flux").guidance == 3.5
    assert model_spec("gemma2-2b").hub_id == "google/gemma-2-2b-it"
    assert model_spec("meta-llama/Llama-2-7b-chat-hf").key == "llama2-7b-chat"  # Hub ids resolve too


def test_unknown_keyword_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'sd3'.*sd14, sd15"):
        model_spec("sd3")
    with pytest.raises(ConfigError, match="known models"):
        load_model("sd3")


@pytest.mark.parametrize("key", ["sdxl", "gemma2-2b", "someone/unlisted-model"])
def test_missing_weights_offline_fail_at_once_with_one_line(key, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        load_model(key)
    assert time.perf_counter() - t0 < 5
    message = str(err.value)
    assert "\n" not in message and "hf download" in message
    assert (model_spec(key).hub_id if key in MODELS else key) in message


def test_missing_weights_without_network_fail_fast(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("steercore.hub.reachable", lambda host, port=443, timeout=3.0: False)
    with pytest.raises(MissingWeightsError, match="huggingface.co is unreachable; download it first with "
                                                  "`hf download stabilityai/sdxl-turbo`"):
        load_model("sdxl-turbo")


def test_local_folders_replace_hub_ids(tiny_cache):
    sd = tm.build_sd(tiny_cache)
    pipe = load_model(str(sd), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and not pipe.unet.training
    pipe = load_model("sd15", device="cpu", local_dir=sd)  # a registry key with its weights in a local folder
    assert pipe.safety_checker is None and pipe.unet.dtype == torch.float32  # CPU: float32, not the spec's fp16
    lm = tm.build_lm("llama", tiny_cache)
    model, tok = load_model(str(lm), device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training and tok.pad_token == "<pad>"
    model, _ = load_model("llama2-7b-chat", device="cpu", local_dir=lm, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_model("sd15", local_dir=sd / "nope")


def test_testbed_models_load_or_say_how_to_build_them():
    for key in ("testbed-t2i", "testbed-lm"):
        folder = registry.PACKAGE_DIR / model_spec(key).local
        if not folder.is_dir():
            with pytest.raises(MissingWeightsError, match="train_testbed"):
                load_model(key, device="cpu")
        else:
            out = load_model(key, device="cpu")
            cls = type(out[0] if isinstance(out, tuple) else out).__name__
            assert cls == model_spec(key).cls.rsplit(".", 1)[1]


def test_chat_formats(tiny_cache):
    _, tok = tm.load_lm("llama", tiny_cache)
    assert format_chat(tok, " what is a cat ", "llama2-7b-chat") == "<s>[INST] what is a cat [/INST] "
    assert format_chat(tok, "what is a cat", "meta-llama/Llama-2-7b-chat-hf").startswith("<s>[INST]")
    assert format_chat(tok, "what is a cat", "qwen2.5-7b") == "<|user|> what is a cat <|assistant|>"
    batch = encode_chat(tok, ["what is a cat", "tell me a story about the dog"], "qwen2.5-7b")
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()  # left-padded
    assert (batch["input_ids"][1] == tok.bos_token_id).sum() == 0  # no BOS added on top of the template's text
