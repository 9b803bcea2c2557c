"""Steering a torch.compile'd model: folded plans and attach_steering compile once (no recompile per strength
value, diffusion step or re-attachment, no graph break) and equal eager; statistics are refused."""

from dataclasses import dataclass

import pytest
import torch
from torch._dynamo.utils import counters

import tiny_models as tm
from steercore.core.errors import ConfigError, SteerError
from steercore.core.plan import SteeringPlan
from steercore.core.stats import ActivationStats
from steercore.models.folding import folded
from steercore.models.hooks import attach_steering, collect_statistics
from steercore.models.sites import find_sites


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # not a silent fallback to eager
        yield
    torch._dynamo.reset()


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def breaks() -> int:
    """Graph breaks, and graphs the backend failed on (dynamo then runs their frame eagerly, quietly)."""
    return (sum(counters["graph_break"].values()) + sum(counters["unimplemented"].values())
            + counters["aot_autograd"]["not_ok"])


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


def compile_(module, style: str, backend: str = "aot_eager"):
    """`module` compiled in place (`.compile()`), or the OptimizedModule that torch.compile(module) returns.
    aot_eager traces as inductor does (functionalised, on fake tensors), without generating code."""
    if style == "wrapped":
        return torch.compile(module, backend=backend)
    module.compile(backend=backend)
    return module


STRENGTHS = [2.0, torch.tensor([0.0, 1.0, 2.0, 3.0]), 0.5, torch.tensor([3.0, 0.5, 1.0, 0.0])]


def sd_plans(pipe):
    """Per-step plans (3 steps, random maps per step): clipped CASteer (μ = 0) and LEACE (μ ≠ 0) with no map
    at up.1 in step 1."""
    sites = find_sites(pipe)
    casteer = tm.random_plan(sites, "casteer", steps=(0, 1, 2), seed=1)
    leace = tm.random_plan(sites, "leace", steps=(0, 1, 2), seed=2)
    leace = SteeringPlan({k: m for k, m in leace.maps.items() if k != (1, "up.1")}, "leace")
    assert casteer.maps[(0, "up.0")].clip and leace.maps[(0, "up.0")].mu is not None
    return {"casteer": casteer, "leace": leace}


def sd_run(pipe, steps=3):
    """Batched CFG (guidance 4: 2 prompts × 2 images, the conditional half steered), seeded per image."""
    return pipe(prompt=["a red cat", "a blue dog"], num_images_per_prompt=2, num_inference_steps=steps,
                guidance_scale=4.0, generator=[torch.Generator().manual_seed(s) for s in range(4)],
                output_type="latent").images


@pytest.mark.parametrize("style", ["in_place", "wrapped"])
def test_hooks_steer_a_compiled_unet_per_step_under_cfg_without_recompiles(style, tiny_cache):
    pipe = tm.load_pipeline("sd", tiny_cache)
    plans = sd_plans(pipe)
    eager = {}
    for name, plan in plans.items():
        for i, beta in enumerate(STRENGTHS):
            with attach_steering(pipe, plan, beta):
                eager[name, i] = sd_run(pipe)
    pipe.unet = compile_(pipe.unet, style)
    plain = sd_run(pipe)
    assert graphs() == 1
    counts = []
    for name, plan in plans.items():
        for i, beta in enumerate(STRENGTHS):  # 3 diffusion steps each, a new attachment each
            with attach_steering(pipe, plan, beta):
                out = sd_run(pipe)
            torch.testing.assert_close(out, eager[name, i], atol=1e-5, rtol=1e-5)
            counts.append(graphs())
    # one graph per plan structure and strength shape (a number, or [4] per sample), on its first steered call
    assert counts == [2, 3, 3, 3, 4, 5, 5, 5] and breaks() == 0
    with attach_steering(pipe, plans["leace"], 1.0), pytest.raises(ConfigError, match="covers steps 0..2"):
        sd_run(pipe, steps=4)
    assert torch.equal(sd_run(pipe), plain) and graphs() == 5  # detached: the plain graph, bit for bit
    assert tm.hook_residue(pipe) == []


def test_hooks_steer_a_compiled_flux_transformer_with_true_cfg(tiny_cache):
    """FLUX: image tokens of the single blocks (after the text) and the joint blocks' first output; the negative
    prompt's call of true CFG is left alone."""
    pipe = tm.load_pipeline("flux", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "midsteer", steps=(0, 1), seed=3)

    def run():
        return pipe(prompt=["a red cat", "a blue dog"], negative_prompt=["a pig", "a pig"], true_cfg_scale=2.0,
                    num_inference_steps=2, generator=[torch.Generator().manual_seed(s) for s in range(2)],
                    output_type="latent", **tm.CALL_KWARGS["flux"]).images

    strengths = [2.0, torch.tensor([0.0, 1.0]), 0.5]
    eager = []
    for beta in strengths:
        with attach_steering(pipe, plan, beta):
            eager.append(run())
    compile_(pipe.transformer, "in_place")
    plain = run()
    counts = [graphs()]
    for beta, want in zip(strengths, eager):
        with attach_steering(pipe, plan, beta):
            torch.testing.assert_close(run(), want, atol=1e-5, rtol=1e-5)
        counts.append(graphs())
    # the first steered call compiles the steered graph and the one of the negative prompt's call (left alone);
    # per-sample strengths one more steered graph; another value nothing
    assert counts == [1, 3, 4, 4] and breaks() == 0
    assert torch.equal(run(), plain) and tm.hook_residue(pipe) == []


LM_STRENGTHS = [3.0, 1.5, 3.0, torch.tensor([1.0, 4.0]), torch.tensor([2.5, 0.0])]


@pytest.mark.parametrize("style,positions", [("in_place", "all"), ("in_place", "last_prompt"),
                                             ("layer", "last_prompt"), ("wrapped", "all")])
@torch.no_grad()
def test_hooks_steer_a_compiled_llm_without_recompiles(style, positions, tiny_cache):
    """The root compiled in place, one compiled decoder layer, or torch.compile(model) (whose generate() runs
    the uncompiled model: steering still sees every call, and its forward is compiled); left padding; prefill
    and decoding."""
    model, tok = tm.load_lm("llama", tiny_cache)
    enc = tok(["what is a red cat", "tell me a short story about the dog please"], return_tensors="pt", padding=True)
    assert not enc["attention_mask"].all()
    plan = tm.random_plan(find_sites(model), "leace", shift=6.0, clip=True)

    def run():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=0, output_scores=True,
                             return_dict_in_generate=True)
        # a forward call of its own is one more graph of each kind: within dynamo's recompile_limit only here
        logits = model(**enc).logits if style == "wrapped" else out.scores[0]
        return logits, out.sequences, torch.stack(out.scores)

    eager = []
    for beta in LM_STRENGTHS:
        with attach_steering(model, plan, beta, llm_positions=positions):
            eager.append(run())
    if style == "layer":
        compile_(model.model.layers[1], "in_place")
    else:
        model = compile_(model, style)
    plain = run()
    counts = [graphs()]
    for beta, want in zip(LM_STRENGTHS, eager):  # a new attachment each
        with attach_steering(model, plan, beta, llm_positions=positions):
            out = run()
        for got, ref in zip(out, want):
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        counts.append(graphs())
    # the first steered call of a strength kind (a number, one per row) compiles each shape the plain model
    # compiled for; other strength values and re-attaching compile nothing
    new = counts[1] - counts[0]
    assert new > 0 and counts[1:4] == [counts[1]] * 3 and counts[4:] == [counts[1] + new] * 2
    assert breaks() == 0
    again = run()
    assert all(torch.equal(a, b) for a, b in zip(again, plain)) and graphs() == counts[-1]
    assert tm.hook_residue(model) == []


def test_hooks_on_an_inductor_compiled_llm_recompile_for_neither_strength_nor_reattachment(tiny_cache):
    """Inductor (about 30 s here with a cold compile cache). The plan has 3 steps, of which an LLM reads step 0:
    the stacked rows are indexed inside the generated kernels."""
    model, tok = tm.load_lm("llama", tiny_cache)
    enc = tok(["what is a red cat", "a pig"], return_tensors="pt", padding=True)
    plan = tm.random_plan(find_sites(model), "casteer", steps=(0, 1, 2), shift=6.0)  # clipped
    with torch.no_grad():
        eager = {}
        for beta in (1.0, 3.5):
            with attach_steering(model, plan, beta):
                eager[beta] = model(**enc).logits
        model.compile()  # inductor
        plain = model(**enc).logits
        for beta in (1.0, 3.5, 1.0):
            with attach_steering(model, plan, beta):
                torch.testing.assert_close(model(**enc).logits, eager[beta], atol=1e-5, rtol=1e-5)
        assert graphs() == 2 and breaks() == 0
        assert torch.equal(model(**enc).logits, plain) and graphs() == 2


@pytest.mark.slow
def test_hooks_on_an_inductor_compiled_unet_recompile_for_neither_step_nor_strength(tiny_cache):
    """Inductor on the per-step plans under CFG (70 to 100 s here with a cold compile cache)."""
    pipe = tm.load_pipeline("sd", tiny_cache)
    plan = sd_plans(pipe)["leace"]
    eager = {}
    for beta in (2.0, 0.5):
        with attach_steering(pipe, plan, beta):
            eager[beta] = sd_run(pipe)
    pipe.unet.compile()  # inductor
    plain = sd_run(pipe)
    for beta in (2.0, 0.5, 2.0):  # inductor's fused kernels sum in another order than eager
        with attach_steering(pipe, plan, beta):
            torch.testing.assert_close(sd_run(pipe), eager[beta], atol=1e-4, rtol=1e-4)
    assert graphs() == 2 and breaks() == 0
    assert torch.equal(sd_run(pipe), plain) and graphs() == 2


def test_statistics_and_maps_that_do_not_stack_are_refused_on_a_compiled_model(tiny_cache):
    model, _ = tm.load_lm("llama", tiny_cache)
    model.model.layers[1].compile(backend="eager")
    with pytest.raises(SteerError, match=r"^LlamaForCausalLM.model.layers.1 is compiled \(torch.compile\): "
                                         r"statistics .* collect them on the uncompiled model$"):
        with collect_statistics(model, ActivationStats("neutral")):
            pass

    @dataclass(frozen=True)
    class Custom:  # a map of its own kind: eager hooks call its edit, a compiled graph needs stacked factors
        dim: int = 32

        def edit(self, x, strength):
            return x

    with pytest.raises(ConfigError, match="site 'layers.0.self_attn': a Custom map cannot be stacked"):
        with attach_steering(model, SteeringPlan({(0, "layers.0.self_attn"): Custom()})):
            pass
    assert tm.hook_residue(model) == []
