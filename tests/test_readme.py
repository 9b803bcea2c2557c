"""The README's pipeline-level Python example runs verbatim and steers red towards blue."""

import re

import numpy as np
import torch

from steercore.experiments.preset import ROOT


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"runs this block verbatim.*?```python\n(.*?)```", text, re.S)
    assert m, "the README lost its tested pipeline example"
    return m.group(1)


def blue_minus_red(image) -> float:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float((rgb[..., 2] - rgb[..., 0]).mean())


def test_readme_pipeline_example_runs_and_steers():
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)  # noqa: S102 (our own README)
    pipe, image = scope["pipe"], scope["image"]
    assert image.size == (32, 32)
    plain = pipe(prompt="a red circle", generator=torch.Generator().manual_seed(0), num_inference_steps=8,
                 guidance_scale=4.0).images[0]
    # the hooks left no trace: a second unsteered call is the same image
    again = pipe(prompt="a red circle", generator=torch.Generator().manual_seed(0), num_inference_steps=8,
                 guidance_scale=4.0).images[0]
    assert np.array_equal(np.asarray(plain), np.asarray(again))
    assert blue_minus_red(image) > blue_minus_red(plain) + 20, (blue_minus_red(image), blue_minus_red(plain))
