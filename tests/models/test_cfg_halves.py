"""attach_steering(cfg_halves=...): the conditional half of a CFG batch only (default), or both halves as the
steering-hogs seed did; on the tiny Stable Diffusion pipeline of tests/tiny_models.py."""

import pytest
import torch

import tiny_models as tm
from steercore.core.errors import ConfigError
from steercore.models.hooks import attach_steering
from steercore.models.sites import find_sites

PROMPTS = ["a red cat", "a blue dog on the left"]


@pytest.fixture(scope="module")
def sd(tiny_cache):
    return tm.load_pipeline("sd", tiny_cache)


def first_noise_predictions(pipe, strength, **steer):
    """The UNet outputs [8, C, H, W] of one CFG step (rows: 4 unconditional, then 4 conditional), unsteered
    (strength None) or steered by a MidSteer plan at every site."""
    outputs = []
    handle = pipe.unet.register_forward_hook(lambda m, a, out: outputs.append((out[0] if isinstance(out, tuple) else out.sample).clone()))
    plan = tm.random_plan(find_sites(pipe), "midsteer")
    try:
        call = dict(prompt=PROMPTS, num_images_per_prompt=2, num_inference_steps=1, output_type="latent",
                    generator=[torch.Generator().manual_seed(s) for s in range(4)], **tm.CALL_KWARGS["sd"])
        if strength is None:
            pipe(**call)
        else:
            with attach_steering(pipe, plan, strength, **steer):
                pipe(**call)
    finally:
        handle.remove()
    (out,) = outputs
    assert out.shape[0] == 8  # 2 prompts × 2 images, doubled for CFG
    return out


def changed(a, b):
    """Per row of a CFG batch: whether steering changed it."""
    return [not torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b)]


def test_default_steers_only_the_conditional_half_and_both_steers_both(sd):
    base = first_noise_predictions(sd, None)
    default = first_noise_predictions(sd, 3.0)
    assert changed(default, base) == [False] * 4 + [True] * 4
    assert torch.equal(first_noise_predictions(sd, 3.0, cfg_halves="conditional"), default)
    both = first_noise_predictions(sd, 3.0, cfg_halves="both")
    assert changed(both, base) == [True] * 8
    assert torch.equal(both[4:], default[4:])  # rows are independent: the conditional half is steered alike
    assert tm.hook_residue(sd) == []


def test_both_halves_give_each_unconditional_row_its_samples_strength(sd):
    base = first_noise_predictions(sd, None)
    strengths = torch.tensor([0.0, 3.0, 0.0, 3.0])  # one per image, in output order
    both = first_noise_predictions(sd, strengths, cfg_halves="both")
    assert changed(both, base) == [False, True, False, True] * 2
    assert torch.equal(both[[0, 2, 4, 6]], base[[0, 2, 4, 6]])
    default = first_noise_predictions(sd, strengths)
    assert changed(default, base) == [False] * 4 + [False, True, False, True]


def test_cfg_halves_is_checked(sd, tiny_cache):
    plan = tm.random_plan(find_sites(sd), "midsteer")
    with pytest.raises(ConfigError, match="cfg_halves must be one of conditional, both"):
        with attach_steering(sd, plan, 1.0, cfg_halves="unconditional"):
            pass
    model, tok = tm.load_lm("llama", tiny_cache)
    with pytest.raises(ConfigError, match="cfg_halves applies to diffusion pipelines"):
        with attach_steering(model, tm.random_plan(find_sites(model), "midsteer"), 1.0, cfg_halves="both"):
            pass
    assert tm.hook_residue(sd) == []
