"""Where activations are read and written in each supported model family, under one naming scheme.

A *site* is one module whose output is steered, named as in docs: UNet `down.{i}` / `mid.{i}` / `up.{i}` (the
cross-attention `attn2` output after `to_out`, before the residual; i counts blocks of that place in execution
order), SANA `sana.{i}` and PixArt `pixart.{i}` (`attn2`), FLUX `joint.{i}` (image stream of the joint
attention) and `single.{i}` (image tokens of the single-stream attention, before its projection), LLMs
`layers.{i}.self_attn` (after `o_proj`) / `layers.{i}.mlp` / `layers.{i}.residual` (decoder-layer output).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from steercore.core.errors import ConfigError

LLM_SITES = ("self_attn", "mlp", "residual")
UNET_PLACES = ("down", "mid", "up")


@dataclass(frozen=True)
class Site:
    """One steerable module and how to read its output."""

    name: str
    module: nn.Module
    """The module whose forward output is the activation (an attention module, an MLP, a decoder layer)."""
    dim: int
    """Activation width D."""
    layout: str
    """'tensor': the output is [B, T, D]; 'first': the output is a tuple whose first element is [B, T, D];
    'image_tail': [B, L_text + L_image, D] of which only the image tokens (after the text) are the site."""
    linear: nn.Linear | None
    """The last linear layer producing the activation (to fold a steering map into), None if not foldable."""


def is_pipeline(target) -> bool:
    """A diffusers pipeline (anything with a `transformer` or `unet` denoiser and a scheduler)."""
    return hasattr(target, "scheduler") and denoiser_of(target, required=False) is not None


def denoiser_of(pipe, required: bool = True) -> nn.Module | None:
    """`pipe.transformer`, else `pipe.unet` (the module that is hooked)."""
    for name in ("transformer", "unet"):
        m = getattr(pipe, name, None)
        if isinstance(m, nn.Module):
            return m
    if required:
        raise ConfigError(f"{type(pipe).__name__} has neither a `transformer` nor a `unet` to steer")
    return None


def language_model_of(target) -> nn.Module:
    """The causal LM module of `target` (a model, or a (model, tokenizer) pair as `load_model` returns)."""
    if isinstance(target, tuple):
        target = target[0]
    if not isinstance(target, nn.Module):
        raise ConfigError(f"cannot steer a {type(target).__name__}: pass a diffusers pipeline or a transformers model")
    return target


def unwrap_compiled(module: nn.Module) -> nn.Module:
    """The module that `torch.compile(module)` wrapped (an OptimizedModule's `_orig_mod`), else `module`."""
    return getattr(module, "_orig_mod", module)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """`model.model.layers` for Llama/Qwen2/Gemma2 (and any transformers decoder with a `layers` list)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), model)
    for candidate in (base, model):
        layers = getattr(candidate, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    raise ConfigError(f"{type(model).__name__} has no decoder `layers` list; supported: Llama, Qwen2, Gemma2 "
                      "and other transformers decoders with model.layers")


def _out_linear(attn: nn.Module) -> nn.Linear | None:
    """`to_out[0]` when the attention output is exactly that layer's output (dropout aside)."""
    to_out = getattr(attn, "to_out", None)
    if not isinstance(to_out, nn.ModuleList) or not len(to_out) or not isinstance(to_out[0], nn.Linear):
        return None
    if getattr(attn, "residual_connection", False) or getattr(attn, "rescale_output_factor", 1.0) != 1.0:
        return None
    return to_out[0]


def _attn_site(name: str, attn: nn.Module, layout: str = "tensor") -> Site:
    linear = _out_linear(attn)
    if linear is not None:
        dim = linear.out_features
    else:  # FLUX single-stream attention (pre_only): heads · head_dim, before the block's projection
        dim = getattr(attn, "inner_dim", None) or attn.heads * attn.head_dim
    return Site(name, attn, dim, layout, linear)


def _unet_sites(unet: nn.Module) -> list[Site]:
    places = {"down": list(getattr(unet, "down_blocks", [])),
              "mid": [unet.mid_block] if getattr(unet, "mid_block", None) is not None else [],
              "up": list(getattr(unet, "up_blocks", []))}
    sites = []
    for place in UNET_PLACES:
        i = 0
        for block in places[place]:
            # registration order of `attentions[k].transformer_blocks[m]` is execution order
            for mod_name, mod in block.named_modules():
                if mod_name.endswith("attn2") and getattr(mod, "is_cross_attention", True):
                    sites.append(_attn_site(f"{place}.{i}", mod))
                    i += 1
    return sites


def _transformer_sites(model: nn.Module) -> list[Site]:
    cls = type(model).__name__
    if cls.startswith("Flux"):
        joint = [_attn_site(f"joint.{i}", b.attn, "first") for i, b in enumerate(model.transformer_blocks)]
        # single-stream attention has no to_out (its output feeds proj_out with the MLP): not foldable
        single = [_attn_site(f"single.{i}", b.attn, "image_tail")
                  for i, b in enumerate(model.single_transformer_blocks)]
        return joint + single
    if cls.startswith("Sana"):
        prefix = "sana"
    elif cls.startswith("PixArt"):
        prefix = "pixart"
    else:
        raise ConfigError(f"unsupported denoiser {cls}; supported: UNet2DConditionModel, SanaTransformer2DModel, "
                          "PixArtTransformer2DModel, FluxTransformer2DModel")
    sites = []
    for i, block in enumerate(model.transformer_blocks):
        attn = getattr(block, "attn2", None)
        if attn is None:
            raise ConfigError(f"{cls} block {i} has no cross-attention `attn2` to steer")
        sites.append(_attn_site(f"{prefix}.{i}", attn))
    return sites


def _llm_sites(model: nn.Module, llm_site: str) -> list[Site]:
    if llm_site not in LLM_SITES:
        raise ConfigError(f"unknown LLM site '{llm_site}'; choose one of {', '.join(LLM_SITES)}")
    sites = []
    for i, layer in enumerate(decoder_layers(model)):
        if llm_site == "self_attn":
            m = layer.self_attn
            linear = getattr(m, "o_proj", None)
            sites.append(Site(f"layers.{i}.self_attn", m, linear.out_features, "first", linear))
        elif llm_site == "mlp":
            m = layer.mlp
            linear = getattr(m, "down_proj", None)
            sites.append(Site(f"layers.{i}.mlp", m, linear.out_features, "tensor", linear))
        else:
            dim = model.config.get_text_config().hidden_size
            sites.append(Site(f"layers.{i}.residual", layer, dim, "tensor", None))
    return sites


def resolve_sites(target, llm_site: str = "self_attn") -> list[Site]:
    """Every site of a pipeline (its denoiser) or a causal LM, in execution order."""
    if is_pipeline(target):
        den = unwrap_compiled(denoiser_of(target))
        if type(den).__name__.startswith("UNet2DCondition"):
            sites = _unet_sites(den)
        else:
            sites = _transformer_sites(den)
    else:
        sites = _llm_sites(unwrap_compiled(language_model_of(target)), llm_site)
    if not sites:
        raise ConfigError(f"found no steering site in {type(target).__name__}")
    return sites


def find_sites(target, llm_site: str = "self_attn") -> dict[str, int]:
    """Site name → activation width D for a diffusers pipeline or a transformers causal LM."""
    return {s.name: s.dim for s in resolve_sites(target, llm_site)}
