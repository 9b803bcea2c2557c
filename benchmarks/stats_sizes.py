"""Size of the neutral statistics (float64 scatter [D, D] per site and stored step) of every paper preset.

Site widths come from the real model configs, built on the meta device (no weights, no download) and read
through the same site resolver the hooks use. Prints a Markdown table (the one in README.md).

    .venv/bin/python benchmarks/stats_sizes.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from steercore.experiments.preset import list_experiments, load_experiment  # noqa: E402
from steercore.models.registry import resolve_spec  # noqa: E402
from steercore.models.sites import find_sites  # noqa: E402


class _Denoiser:
    """What the site resolver needs of a pipeline: a denoiser and a scheduler."""

    def __init__(self, **denoiser):
        self.__dict__.update(denoiser)
        self.scheduler = None


def _sd1():
    from diffusers import UNet2DConditionModel
    return _Denoiser(unet=UNet2DConditionModel(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                               cross_attention_dim=768, attention_head_dim=8))


def _sdxl():
    from diffusers import UNet2DConditionModel
    return _Denoiser(unet=UNet2DConditionModel(
        block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816))


def _sana():
    from diffusers import SanaTransformer2DModel
    return _Denoiser(transformer=SanaTransformer2DModel(num_layers=20, num_attention_heads=70, attention_head_dim=32,
                                                        num_cross_attention_heads=20, cross_attention_head_dim=112,
                                                        cross_attention_dim=2240, caption_channels=2304))


def _llama2_7b():
    from transformers import LlamaConfig, LlamaForCausalLM
    return LlamaForCausalLM(LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                                        num_hidden_layers=32))


ARCHITECTURES = {"sd14": _sd1, "sd15": _sd1, "sd21": _sd1, "sdxl": _sdxl, "sdxl-turbo": _sdxl, "sana": _sana,
                 "sana-sprint": _sana, "llama2-7b-chat": _llama2_7b, "llama2-7b": _llama2_7b}


def main() -> None:
    widths = {}
    rows = []
    for name in list_experiments():
        exp = load_experiment(name)
        model = exp.stats_model
        if model not in ARCHITECTURES or not exp.needs_cov:
            continue
        if model not in widths:
            with torch.device("meta"):
                widths[model] = list(find_sites(ARCHITECTURES[model](), exp["llm_site"]).values())
        dims = widths[model]
        spec = resolve_spec(model)
        steps = (exp["steps"] or spec.steps or 1) if exp["cov"].get("per_step") else 1
        per_step = sum(d * d for d in dims) * 8
        rows.append((name, model, len(dims), min(dims), max(dims), steps, per_step, per_step * steps))
    print("| preset | statistics model | sites | D | stored steps | one step | file / in memory |")
    print("|---|---|---|---|---|---|---|")
    for name, model, n, lo, hi, steps, one, total in rows:
        d = f"{lo}" if lo == hi else f"{lo}–{hi}"
        print(f"| {name} | {model} | {n} | {d} | {steps} | {one / 1e6:.0f} MB | {total / 1e9:.2f} GB |")


if __name__ == "__main__":
    main()
