"""Site discovery on tiny real-class models: names, counts, widths, and the modules behind them."""

import pytest
import torch

import tiny_models as tm
from steercore.core.errors import ConfigError
from steercore.models.sites import find_sites, resolve_sites


@pytest.mark.parametrize("name, expected", [
    ("sd", {"down.0": 32, "down.1": 32, "mid.0": 64, "up.0": 32, "up.1": 32, "up.2": 32}),
    ("sdxl", {"down.0": 64, "down.1": 64, "mid.0": 64, "mid.1": 64, "up.0": 64, "up.1": 64, "up.2": 64, "up.3": 64}),
    ("sana", {"sana.0": 8, "sana.1": 8}),
    ("pixart", {"pixart.0": 24, "pixart.1": 24}),
    ("flux", {"joint.0": 32, "joint.1": 32, "single.0": 32, "single.1": 32}),
])
def test_pipeline_sites(name, expected, tiny_cache):
    pipe = tm.load_pipeline(name, tiny_cache)
    assert find_sites(pipe) == expected


def test_unet_sites_are_attn2_in_execution_order(tiny_cache):
    pipe = tm.load_pipeline("sd", tiny_cache)
    unet = pipe.unet
    sites = {s.name: s for s in resolve_sites(pipe)}
    assert sites["down.0"].module is unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert sites["down.1"].module is unet.down_blocks[0].attentions[1].transformer_blocks[0].attn2
    assert sites["mid.0"].module is unet.mid_block.attentions[0].transformer_blocks[0].attn2
    assert sites["up.2"].module is unet.up_blocks[1].attentions[2].transformer_blocks[0].attn2
    assert sites["up.0"].linear is unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2.to_out[0]
    # the order hooks fire in is the naming order
    order = []
    hs = [s.module.register_forward_hook(lambda m, a, o, n=n: order.append(n)) for n, s in sites.items()]
    try:
        pipe(prompt="a cat", num_inference_steps=1, output_type="latent")
    finally:
        for h in hs:
            h.remove()
    assert order == list(sites)


def test_flux_and_sana_modules(tiny_cache):
    flux = tm.load_pipeline("flux", tiny_cache)
    sites = {s.name: s for s in resolve_sites(flux)}
    assert sites["joint.1"].module is flux.transformer.transformer_blocks[1].attn
    assert sites["joint.1"].layout == "first" and sites["single.0"].layout == "image_tail"
    assert sites["single.0"].linear is None  # no to_out: not foldable
    sana = tm.load_pipeline("sana", tiny_cache)
    assert resolve_sites(sana)[1].module is sana.transformer.transformer_blocks[1].attn2


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_lm_sites(family, tiny_cache):
    model, _ = tm.load_lm(family, tiny_cache)
    for llm_site in ("self_attn", "mlp", "residual"):
        assert find_sites(model, llm_site) == {f"layers.{i}.{llm_site}": 32 for i in range(2)}
    sites = resolve_sites((model, None), "self_attn")  # (model, tokenizer) pairs are accepted
    assert sites[1].module is model.model.layers[1].self_attn and sites[1].linear is model.model.layers[1].self_attn.o_proj
    assert resolve_sites(model, "mlp")[0].linear is model.model.layers[0].mlp.down_proj
    assert resolve_sites(model, "residual")[0].module is model.model.layers[0]
    x = torch.tensor([[2, 11, 12]])
    out = {}
    h = model.model.layers[0].register_forward_hook(lambda m, a, o: out.setdefault("residual", o))
    try:
        model(x)
    finally:
        h.remove()
    assert isinstance(out["residual"], torch.Tensor) and out["residual"].shape == (1, 3, 32)  # transformers 5: a tensor


def test_unknown_sites_and_models(tiny_cache):
    model, _ = tm.load_lm("llama", tiny_cache)
    with pytest.raises(ConfigError, match="self_attn, mlp, residual"):
        find_sites(model, "attention")
    with pytest.raises(ConfigError, match="cannot steer a str"):
        find_sites("sd15")
    with pytest.raises(ConfigError, match="no decoder"):
        find_sites(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["sd", "flux", "llama"])
def test_sites_of_a_compiled_model_are_its_own_modules(name, tiny_cache):
    """Compiled in place, or wrapped by torch.compile(module) (an OptimizedModule): the same sites, the same
    modules (nothing is compiled until a call)."""
    if name == "llama":
        target, _ = tm.load_lm("llama", tiny_cache)
    else:
        target = tm.load_pipeline(name, tiny_cache)
    before = [(s.name, s.module, s.dim, s.layout, s.linear) for s in resolve_sites(target)]
    if name == "llama":
        target.compile()
        in_place = resolve_sites(target)
        wrapped = resolve_sites(torch.compile(target))
    else:
        den = "unet" if name == "sd" else "transformer"
        getattr(target, den).compile()
        in_place = resolve_sites(target)
        setattr(target, den, torch.compile(getattr(target, den)))
        wrapped = resolve_sites(target)
    for sites in (in_place, wrapped):
        assert [(s.name, s.module, s.dim, s.layout, s.linear) for s in sites] == before
