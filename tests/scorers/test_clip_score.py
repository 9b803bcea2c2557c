"""CLIP concept score on an architecture-identical ViT-B-32 with random weights (open_clip pretrained=None)."""

import csv
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image
from checks import assert_one_line_fast

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.scorers.clip_score import ClipScorer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer("ViT-B-32", None, batch_size=5, device="cpu", progress=False)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48 + i % 5, 40, 3), dtype=np.uint8)) for i in range(13)]


@pytest.fixture(scope="module")
def scores(scorer, images):
    return scorer.score(images, "cat")


@pytest.fixture(scope="module")
def oracle_images(scorer, images):
    """Unit image embeddings straight from the open_clip model, all images in one forward pass."""
    with torch.no_grad():
        e = scorer.model.encode_image(torch.stack([scorer.preprocess(im) for im in images]))
    return e / e.norm(dim=-1, keepdim=True)


def oracle_cos(scorer, oracle_images, text, n=None):
    with torch.no_grad():
        t = scorer.model.encode_text(scorer.tokenizer([text]))
    return (oracle_images[:n] @ (t / t.norm(dim=-1, keepdim=True)).T)[:, 0].numpy()


def test_every_image_scored_with_the_clipscore_formula(scorer, oracle_images, scores):
    # 13 images in batches of 5: the last batch holds 3, and none is dropped
    assert len(scores) == 13 and all(isinstance(s, float) and s >= 0 for s in scores)
    assert scorer.score([], "cat") == [] and scorer.accuracy([], "cat") == []
    np.testing.assert_allclose(scores, np.maximum(0, 2.5 * oracle_cos(scorer, oracle_images, "cat")), atol=1e-5)


def test_deterministic_and_independent_of_batch_size(scorer, images, scores):
    scorer.batch_size = 4
    try:
        again = scorer.score(images[:6], "cat")
    finally:
        scorer.batch_size = 5
    np.testing.assert_allclose(again, scores[:6], atol=1e-5)


def test_accuracy_against_empty_prompt_and_other_concepts(scorer, images):
    some = images[:4]
    cos = scorer.cosines(some, ["cat", "", "dog"])  # checked against the model in the test above
    got = scorer.accuracy(some, "cat")
    assert got == (cos[:, 0] > cos[:, 1]).tolist() and all(isinstance(g, bool) for g in got)
    both = scorer.accuracy(some, "cat", against=["", "dog"])
    assert both == ((cos[:, 0] > cos[:, 1]) & (cos[:, 0] > cos[:, 2])).tolist()
    assert scorer.accuracy(some[:1], "cat", against=["cat"]) == [False]  # strictly higher
    with pytest.raises(ConfigError):
        scorer.accuracy(some, "cat", against=[])


def test_templates_average_normalised_text_embeddings(scorer):
    scorer.templates = ["a photo of a {}", "{}"]
    try:
        got = scorer.text_features(["cat", ""])
    finally:
        scorer.templates = ["{}"]
    with torch.no_grad():
        e = scorer.model.encode_text(scorer.tokenizer(["a photo of a cat", "cat", ""]), normalize=True)
    mean = e[:2].mean(0)
    torch.testing.assert_close(got[0], mean / mean.norm(), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], e[2], atol=1e-5, rtol=0)  # the empty prompt is not templated
    with pytest.raises(ConfigError):
        ClipScorer("ViT-B-32", None, templates=["a photo"])


def test_local_checkpoint_and_open_clip_folder_reproduce_scores(scorer, images, scores, tmp_path):
    from safetensors.torch import save_file

    ckpt = tmp_path / "clip.pt"
    torch.save(scorer.model.state_dict(), ckpt)
    from_file = ClipScorer("ViT-B-32", ckpt, device="cpu", progress=False)
    np.testing.assert_allclose(from_file.score(images[:1], "cat"), scores[:1], atol=1e-5)
    del from_file
    folder = tmp_path / "clipdir"
    folder.mkdir()
    import open_clip

    cfg = {"model_cfg": open_clip.get_model_config("ViT-B-32"), "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    from_dir = ClipScorer(str(folder), device="cpu", progress=False)
    np.testing.assert_allclose(from_dir.score(images[:1], "cat"), scores[:1], atol=1e-5)


def test_paths_are_loaded_like_images(scorer, images, scores, tmp_path):
    paths = []
    for i, im in enumerate(images[:2]):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    np.testing.assert_allclose(scorer.score(paths, "cat"), scores[:2], atol=1e-5)


def test_offline_without_weights_names_the_download(no_caches):  # noqa: F811
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        ClipScorer()
    assert_one_line_fast(e, t, "timm/vit_base_patch32_clip_224.openai", "hf download")
