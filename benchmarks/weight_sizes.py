"""Parameter counts of the models the paper presets load, from their real configs built on the meta device
(no weights, no download), component by component. `steercore.models.registry.PARAMS` and the scorers' size
tables hold these numbers (a test compares a few); the README's per-preset table multiplies them by the bytes
of the dtype each model runs in on a GPU.

    .venv/bin/python benchmarks/weight_sizes.py

Configs: the values of each repository's config.json (SD 1.5 / SDXL / SANA components, Llama 2 7B, Llama 3.1
8B, Llama 3.2 3B, bert-base-uncased, roberta-large) and open_clip's ViT-B-32; SANA's DC-AE is diffusers'
AutoencoderDC default configuration (that of dc-ae-f32c32-sana-1.0).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _clip_l():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))


def _clip_bigg():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    return CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                                                      num_hidden_layers=32, num_attention_heads=20,
                                                      max_position_embeddings=77, projection_dim=1280,
                                                      hidden_act="gelu"))


def _sd_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=["DownEncoderBlock2D"] * 4,
                         up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2)


def sd15():
    from diffusers import UNet2DConditionModel
    return {"unet": UNet2DConditionModel(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                         cross_attention_dim=768, attention_head_dim=8),
            "text_encoder": _clip_l(), "vae": _sd_vae()}


def sdxl():
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    return {"unet": unet, "text_encoder": _clip_l(), "text_encoder_2": _clip_bigg(), "vae": _sd_vae()}


def sana():
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model
    transformer = SanaTransformer2DModel(in_channels=32, out_channels=32, num_layers=20, num_attention_heads=70,
                                         attention_head_dim=32, num_cross_attention_heads=20,
                                         cross_attention_head_dim=112, cross_attention_dim=2240,
                                         caption_channels=2304, sample_size=32, patch_size=1)
    text = Gemma2Model(Gemma2Config(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                    num_attention_heads=8, num_key_value_heads=4, head_dim=256))
    return {"transformer": transformer, "text_encoder": text, "vae": AutoencoderDC()}


def _llama(**kw):
    from transformers import LlamaConfig, LlamaForCausalLM
    return {"model": LlamaForCausalLM(LlamaConfig(**kw))}


def llama2_7b():
    return _llama(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32)


def llama31_8b():
    return _llama(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8)


def llama32_3b():
    return _llama(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                  num_attention_heads=24, num_key_value_heads=8, tie_word_embeddings=True)


def clip_b32():
    import open_clip
    return {"model": open_clip.create_model("ViT-B-32", pretrained=None, device="meta")}


def bert_base():
    from transformers import BertConfig, BertForSequenceClassification
    return {"model": BertForSequenceClassification(BertConfig(num_labels=6))}  # bert-base-uncased's config


def roberta_large():
    from transformers import RobertaConfig, RobertaModel
    return {"model": RobertaModel(RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                                                num_attention_heads=16, intermediate_size=4096,
                                                max_position_embeddings=514, type_vocab_size=1))}


def minilm():
    from transformers import BertConfig, BertModel
    return {"model": BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                          intermediate_size=1536))}  # all-MiniLM-L6-v2's config


def inception():
    from torchvision.models import inception_v3
    # torchvision's Inception-v3 without the auxiliary head: the architecture of clean-fid's TorchScript file.
    return {"model": inception_v3(weights=None, aux_logits=False, init_weights=False)}


MODELS = {"sd15": sd15, "sdxl": sdxl, "sana": sana, "llama2-7b-chat": llama2_7b,
          "meta-llama/Llama-3.1-8B-Instruct": llama31_8b, "meta-llama/Llama-3.2-3B-Instruct": llama32_3b,
          "clip ViT-B-32": clip_b32, "detoxify bert-base-uncased": bert_base, "roberta-large": roberta_large,
          "all-MiniLM-L6-v2": minilm, "Inception-v3": inception}


def counts() -> dict[str, dict[str, int]]:
    out = {}
    for name, build in MODELS.items():
        with torch.device("meta"):
            out[name] = {k: _n(m) for k, m in build().items()}
    return out


if __name__ == "__main__":
    for name, parts in counts().items():
        detail = ", ".join(f"{k} {v:,}" for k, v in parts.items())
        print(f"{name}: {sum(parts.values()):,} ({detail})")
