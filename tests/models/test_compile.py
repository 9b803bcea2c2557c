"""Steering a torch.compile'd model: folded plans compile once (no recompile per strength or diffusion step,
no graph break) and equal eager; hooks, which torch.compile would silently skip, are refused."""

import pytest
import torch
from torch._dynamo.utils import counters

import tiny_models as tm
from steercore.core.errors import SteerError
from steercore.core.stats import ActivationStats
from steercore.models.folding import folded
from steercore.models.hooks import attach_steering, collect_statistics
from steercore.models.sites import find_sites


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def breaks() -> int:
    return sum(counters["graph_break"].values())


def test_folded_llm_compiles_once_for_all_strengths(tiny_cache):
    model, tok = tm.load_lm("llama", tiny_cache)
    enc = tok(["what is a red cat", "a pig"], return_tensors="pt", padding=True)
    plan = tm.random_plan(find_sites(model), "leace", clip=False)  # μ ≠ 0: folding adds a bias to o_proj
    eager = {}
    with torch.no_grad():
        base = model(**enc).logits
        for beta in (1.0, 2.0, 3.5):
            with folded(model, plan, beta):
                eager[beta] = model(**enc).logits
        model.compile(backend="eager")
        model(**enc)
        assert graphs() == 1 and breaks() == 0
        for beta in (1.0, 2.0, 3.5):
            with folded(model, plan, beta):
                out = model(**enc).logits
            torch.testing.assert_close(out, eager[beta], atol=1e-6, rtol=1e-6)
        assert graphs() == 2  # one recompile for the added bias, none per strength
        assert breaks() == 0
        torch.testing.assert_close(model(**enc).logits, base, atol=0, rtol=0)  # unfolded: the plain graph again
        assert graphs() == 2


def test_folded_unet_compiles_once_for_all_steps_and_strengths(tiny_cache):
    pipe = tm.load_pipeline("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "casteer", clip=False)  # no offset: the weights change, nothing else

    def run():
        return pipe(prompt=["a red cat", "a blue dog"], num_inference_steps=4, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(0), output_type="latent").images

    with folded(pipe, plan, 2.0):
        eager = run()
    pipe.unet.compile(backend="eager")
    plain = run()
    assert graphs() == 1 and breaks() == 0
    for beta in (2.0, 0.5, 4.0):  # 4 diffusion steps each
        with folded(pipe, plan, beta):
            out = run()
        if beta == 2.0:
            torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out, plain)
    assert graphs() == 1 and breaks() == 0  # the steered weights are graph inputs: no recompile at all


def test_hooks_refuse_a_compiled_model(tiny_cache):
    pipe = tm.load_pipeline("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "casteer")
    pipe.unet.compile(backend="eager")
    with pytest.raises(SteerError, match=r"UNet2DConditionModel.\(root\) is compiled .*`folded"):
        with attach_steering(pipe, plan, 2.0):
            pass
    assert tm.hook_residue(pipe) == []
    model, _ = tm.load_lm("llama", tiny_cache)
    model.model.layers[1].compile(backend="eager")  # a compiled submodule is enough to lose the hooks
    with pytest.raises(SteerError, match=r"LlamaForCausalLM.model.layers.1 is compiled"):
        with collect_statistics(model, ActivationStats("neutral")):
            pass
