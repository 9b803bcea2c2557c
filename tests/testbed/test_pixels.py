"""The pixel rules of the T2I ablation read every rendered scene's colour and shape, and no shape from a blank."""

import numpy as np
from PIL import Image

from steercore.testbed.pixels import pixel_attributes
from steercore.testbed.shapes import render, sample_scene, scene, to_pil


def test_pixel_rules_read_every_rendered_scene():
    scenes = [scene(seed) for seed in range(2000)]  # every colour, shape, size and position of the world
    got = [pixel_attributes(im) for im in to_pil(render(scenes))]
    wrong = [(s.colour, s.shape, g) for s, g in zip(scenes, got) if g != (s.colour, s.shape)]
    assert not wrong, wrong[:5]


def test_pixel_rules_follow_the_drawn_attribute_not_the_seed():
    rng = np.random.default_rng(3)
    for colour, shape in (("blue", "square"), ("red", "triangle"), ("yellow", "circle"), ("green", "square")):
        s = sample_scene(rng, colour=colour, shape=shape)
        assert pixel_attributes(to_pil(render([s]))[0]) == (colour, shape)


def test_a_blank_image_shows_no_shape():
    assert pixel_attributes(Image.new("RGB", (32, 32), (20, 20, 20))) == (None, None)
