"""Tiny models of every supported family, built from config with the real diffusers/transformers classes,
saved with `save_pretrained` and reloaded offline (tokenizers too), so tests exercise the real loading path.

Each `build_*(cache_dir)` writes the model once under `cache_dir/<name>` (seeded, deterministic) and returns
that folder; each `load_*(cache_dir)` returns a fresh reloaded pipeline, or (model, tokenizer) for LMs.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import torch

WORDS = ("a photo of the cat dog horse pig red blue green yellow circle square triangle small large left right "
         "painting in with on and is what how why tell me about answer question please write story short").split()


# ------------------------------------------------------------------------------------------ tokenizers


@lru_cache(maxsize=1)
def _clip_bpe(n_merges: int = 2000) -> tuple[dict, list]:
    """A truncated copy of the CLIP BPE vocabulary that open_clip ships: bytes, bytes + '</w>', n merges."""
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:n_merges + 1]
    from open_clip.tokenizer import bytes_to_unicode

    base = list(bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def clip_tokenizer(max_length: int = 16):
    """The real CLIPTokenizer class with a truncated CLIP BPE vocabulary (about 2.5k tokens)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges], model_max_length=max_length)


def word_tokenizer(*, chat: bool = True, max_length: int = 64, padding_side: str = "left", eos="</s>"):
    """A word-level fast tokenizer (fixed vocabulary, no training) with <s>, </s>, <pad>, <unk> and,
    optionally, a minimal chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<|user|>", "<|assistant|>", "?", ".", ","]
    vocab = {t: i for i, t in enumerate(specials + list(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length, padding_side=padding_side)
    if chat:
        fast.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                              "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return fast


# ------------------------------------------------------------------------------------------ helpers


def _clip_text(vocab_size: int, hidden: int = 32, projection: int | None = None, max_pos: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=max_pos, bos_token_id=vocab_size - 2,
                         eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1, projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)


def _t5(vocab_size: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0))


def _vae_kl(latent_channels: int = 4, blocks=(32, 64), groups: int = 32, **kw):
    from diffusers import AutoencoderKL

    n = len(blocks)
    return AutoencoderKL(block_out_channels=list(blocks), in_channels=3, out_channels=3,
                         down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
                         latent_channels=latent_channels, norm_num_groups=groups, layers_per_block=1, **kw)


def _pipeline(cls, path: Path, components: dict):
    pipe = cls(**components)
    pipe.save_pretrained(path)
    (path / ".complete").write_text("ok")


def _build(cache_dir, name: str, fn) -> Path:
    path = Path(cache_dir) / name
    if not (path / ".complete").exists():
        torch.manual_seed(0)
        fn(path)
    return path


# ------------------------------------------------------------------------------------------ diffusion


def build_sd(cache_dir) -> Path:
    """StableDiffusionPipeline: UNet2DConditionModel (down 2 / mid 1 / up 3 attn2 sites), 16×16 px."""
    def make(path):
        from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

        tok = clip_tokenizer()
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
        _pipeline(StableDiffusionPipeline, path, dict(
            unet=unet, vae=_vae_kl(), text_encoder=_clip_text(len(tok)), tokenizer=tok,
            scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False))
    return _build(cache_dir, "sd", make)


def build_sdxl(cache_dir) -> Path:
    """StableDiffusionXLPipeline with two CLIP text encoders; 16×16 px."""
    def make(path):
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

        tok = clip_tokenizer()
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
            cross_attention_dim=64, norm_num_groups=32)
        _pipeline(StableDiffusionXLPipeline, path, dict(
            unet=unet, vae=_vae_kl(), text_encoder=_clip_text(len(tok)), tokenizer=tok,
            text_encoder_2=_clip_text(len(tok), projection=32), tokenizer_2=clip_tokenizer(),
            scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             timestep_spacing="leading", steps_offset=1)))
    return _build(cache_dir, "sdxl", make)


def build_sana(cache_dir, *, sample_size: int = 8, vae_stages: int = 2) -> Path:
    """SanaPipeline: SanaTransformer2DModel (2 blocks), AutoencoderDC, Gemma2Model text encoder. The latent is
    `sample_size` wide and the DC-AE compresses by 2**(vae_stages - 1); the pipeline's resolution binning
    accepts sample sizes 16, 32, 64 and 128 only (the real 1024-px model: 32 with a 32x DC-AE, vae_stages 6)."""
    def make(path):
        from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
        from transformers import Gemma2Config, Gemma2Model

        tok = word_tokenizer(chat=False, max_length=300, padding_side="right")
        transformer = SanaTransformer2DModel(
            patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2, attention_head_dim=4,
            num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
            sample_size=sample_size)
        res = max(1, vae_stages // 2)  # ResBlocks at the high resolutions, as the real DC-AE (3 of its 6 stages)
        blocks = ("ResBlock",) * res + ("EfficientViTBlock",) * (vae_stages - res)
        multiscales = ((),) * res + ((5,),) * (vae_stages - res)
        vae = AutoencoderDC(
            in_channels=3, latent_channels=4, attention_head_dim=2,
            encoder_block_types=blocks, decoder_block_types=blocks,
            encoder_block_out_channels=(8,) * vae_stages, decoder_block_out_channels=(8,) * vae_stages,
            encoder_qkv_multiscales=multiscales, decoder_qkv_multiscales=multiscales,
            encoder_layers_per_block=(1,) * vae_stages, decoder_layers_per_block=[1] * vae_stages,
            downsample_block_type="conv", upsample_block_type="interpolate", decoder_norm_types="rms_norm",
            decoder_act_fns="silu", scaling_factor=0.41407)
        text = Gemma2Model(Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=64, num_attention_heads=2,
                                        num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(tok),
                                        max_position_embeddings=1024, pad_token_id=0))
        _pipeline(SanaPipeline, path, dict(transformer=transformer, vae=vae, text_encoder=text, tokenizer=tok,
                                           scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)))
    name = "sana" if (sample_size, vae_stages) == (8, 2) else f"sana_s{sample_size}_f{2 ** (vae_stages - 1)}"
    return _build(cache_dir, name, make)


def build_pixart(cache_dir) -> Path:
    """PixArtAlphaPipeline: PixArtTransformer2DModel (2 blocks), T5EncoderModel text encoder."""
    def make(path):
        from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

        tok = word_tokenizer(chat=False, max_length=120, padding_side="right")
        transformer = PixArtTransformer2DModel(
            sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
            caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True,
            activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
            norm_elementwise_affine=False, norm_eps=1e-6)
        _pipeline(PixArtAlphaPipeline, path, dict(transformer=transformer, vae=_vae_kl(), text_encoder=_t5(len(tok)),
                                                  tokenizer=tok, scheduler=DDIMScheduler()))
    return _build(cache_dir, "pixart", make)


def build_flux(cache_dir) -> Path:
    """FluxPipeline: FluxTransformer2DModel (2 joint + 2 single blocks), CLIP + T5 text encoders."""
    def make(path):
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

        tok = clip_tokenizer(max_length=16)
        tok2 = word_tokenizer(chat=False, max_length=32, padding_side="right")
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        vae = _vae_kl(latent_channels=1, blocks=(4,), groups=1, use_quant_conv=False, use_post_quant_conv=False,
                      shift_factor=0.0609, scaling_factor=1.5035)
        _pipeline(FluxPipeline, path, dict(transformer=transformer, vae=vae, text_encoder=_clip_text(len(tok)),
                                           tokenizer=tok, text_encoder_2=_t5(len(tok2)), tokenizer_2=tok2,
                                           scheduler=FlowMatchEulerDiscreteScheduler()))
    return _build(cache_dir, "flux", make)


PIPELINES = {"sd": build_sd, "sdxl": build_sdxl, "sana": build_sana, "pixart": build_pixart, "flux": build_flux}


def load_pipeline(name: str, cache_dir):
    """A freshly reloaded tiny pipeline ('sd', 'sdxl', 'sana', 'pixart', 'flux'), fp32, eval mode, on CPU."""
    from diffusers import DiffusionPipeline

    path = PIPELINES[name](cache_dir)
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------ language models


def _lm_config(family: str, vocab_size: int):
    from transformers import Gemma2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
                  bos_token_id=2, eos_token_id=3)
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=True)
    if family == "gemma2":
        return Gemma2Config(**common, head_dim=8, sliding_window=16, attn_implementation="eager")
    raise KeyError(family)


LM_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma2": "Gemma2ForCausalLM"}


def build_lm(family: str, cache_dir) -> Path:
    """A 2-layer causal LM of `family` ('llama', 'qwen2', 'gemma2') and its word-level chat tokenizer."""
    def make(path):
        import transformers

        tok = word_tokenizer()
        model = getattr(transformers, LM_CLASSES[family])(_lm_config(family, len(tok)))
        model.save_pretrained(path)
        tok.save_pretrained(path)
        (path / ".complete").write_text("ok")
    return _build(cache_dir, f"lm-{family}", make)


def load_lm(family: str, cache_dir):
    """(model, tokenizer) freshly reloaded from the saved folder, fp32, eval mode."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    path = build_lm(family, cache_dir)
    model = getattr(transformers, LM_CLASSES[family]).from_pretrained(path, local_files_only=True).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)


# Extra call arguments that keep each tiny pipeline at its tiny size (the real ones need none).
CALL_KWARGS = {
    "sd": {}, "sdxl": {},
    "sana": dict(height=32, width=32, use_resolution_binning=False),
    "pixart": dict(height=16, width=16, use_resolution_binning=False),
    "flux": dict(height=16, width=16, max_sequence_length=32),
}


# ------------------------------------------------------------------------------------------ plans and checks


def random_plan(sites: dict[str, int], method: str, *, steps=(0,), seed: int = 0, shift: float = 3.0, **fit):
    """A steering plan of `method` at every site, fitted on random statistics (ActivationStats + build_plan):
    neutral rows ~ N(0, I·diag) and a source concept mean shifted by `shift` along a random direction."""
    from steercore.core.plan import build_plan
    from steercore.core.stats import ActivationStats

    g = torch.Generator().manual_seed(seed)
    neutral, source = ActivationStats("neutral"), ActivationStats("concept")
    for step in steps:
        for site, D in sites.items():
            scale = torch.rand(D, generator=g) + 0.5
            neutral.add(step, site, torch.randn(4 * D + 8, D, generator=g) * scale)
            source.add(step, site, torch.randn(8, D, generator=g) * scale + shift * torch.randn(D, generator=g))
    return build_plan(method, source, neutral=neutral, **fit)


def hook_residue(target) -> list[str]:
    """Everything attach/collect/fold could leave behind on a pipeline (its denoiser, scheduler and itself) or
    a model: torch hooks, patched methods, forward patches (compiled models). (Text encoders are never hooked by
    steercore; transformers installs its own output-recording hooks there on first use.)"""
    if hasattr(target, "components"):
        modules = [getattr(target, "transformer", None) or target.unet]
    else:
        modules = [target[0] if isinstance(target, tuple) else target]
    left = []
    for root in modules:
        for name, m in root.named_modules():
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
                if getattr(m, kind):
                    left.append(f"{type(root).__name__}.{name}: {kind}")
            if "_steer_folded" in vars(m):
                left.append(f"{name}: folded flag")
            if "forward" in vars(m) and not hasattr(m, "_orig_mod"):  # a torch.compile wrapper sets its own
                left.append(f"{type(root).__name__}.{name}: forward patched")
    for obj in (target, getattr(target, "scheduler", None)):
        if obj is not None and not isinstance(obj, tuple):
            left += [f"{type(obj).__name__}.{k} patched" for k in ("step", "set_timesteps", "encode_prompt")
                     if k in vars(obj)]
    return left
