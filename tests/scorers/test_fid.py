"""FID/KID with a custom feature extractor (as the testbed passes) and with clean-fid's Inception path
(a TorchScript stand-in with the real interface), against clean-fid's own formulas."""

import csv
import importlib
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from checks import assert_one_line_fast

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.scorers.fid import FeatureSet, fid, folder_features, kid

fid_module = importlib.import_module("steercore.scorers.fid")  # the package exports the function `fid`

torch.set_num_threads(1)


def save_images(folder, n, offset, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = (rng.integers(0, 200, (20, 24, 3)) + offset).astype(np.uint8)
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return save_images(root / "a", 12, 0, 0), save_images(root / "b", 12, 40, 1), save_images(root / "c", 53, 0, 2)


class Projection:
    """features(list[PIL]) -> [N, 8]: a fixed random projection of 8×8 thumbnails; records batch sizes."""

    def __init__(self):
        self.w = torch.randn(3 * 8 * 8, 8, generator=torch.Generator().manual_seed(0))
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        x = torch.stack([torch.from_numpy(np.asarray(im.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1)
                         for im in images]) / 255
        return x.flatten(1) @ self.w


def test_fid_matches_clean_fid_and_is_zero_on_itself(folders):
    from cleanfid.fid import fid_from_feats

    a, b, _ = folders
    fx = Projection()
    fa, fb = (folder_features(d, feature_extractor=fx, progress=False) for d in (a, b))
    got = fid(a, b, feature_extractor=fx, batch_size=5, progress=False)
    assert got == pytest.approx(fid_from_feats(fa.feats, fb.feats), rel=1e-9) and got > 1
    assert fid(b, a, feature_extractor=fx, progress=False) == pytest.approx(got, rel=1e-6)
    assert abs(fid(a, a, feature_extractor=fx, progress=False)) < 1e-6


def test_kid_matches_clean_fid_and_is_seeded(folders):
    from cleanfid.fid import kernel_distance

    a, b, _ = folders
    fx = Projection()
    fa, fb = (folder_features(d, feature_extractor=fx, progress=False) for d in (a, b))
    got = kid(a, b, feature_extractor=fx, progress=False)
    # with 12 + 12 images every subset is the whole set, so clean-fid's unseeded sampling agrees
    assert got == pytest.approx(kernel_distance(fa.feats, fb.feats), rel=1e-9) and got > 0
    assert kid(a, b, feature_extractor=fx, progress=False, seed=3) == pytest.approx(got, rel=1e-9)


def test_no_image_dropped_and_batching_does_not_matter(folders):
    fx = Projection()
    c = folders[2]
    feats = folder_features(c, feature_extractor=fx, batch_size=50, progress=False)
    assert feats.n == 53 and fx.calls == [50, 3]
    again = folder_features(c, feature_extractor=Projection(), batch_size=7, progress=False)
    np.testing.assert_allclose(again.feats, feats.feats, atol=1e-6)


def test_npz_reference_statistics_round_trip(folders, tmp_path):
    a, b, _ = folders
    fx = Projection()
    fid_module.reference_statistics(b, tmp_path / "ref.npz", feature_extractor=fx, progress=False)
    assert fid(a, tmp_path / "ref.npz", feature_extractor=fx, progress=False) == pytest.approx(
        fid(a, b, feature_extractor=fx, progress=False), rel=1e-9)
    assert kid(a, tmp_path / "ref.npz", feature_extractor=fx, progress=False) == pytest.approx(
        kid(a, b, feature_extractor=fx, progress=False), rel=1e-9)
    # clean-fid's own statistics files hold only mu and sigma: fine for FID, not for KID
    ref = FeatureSet.load(tmp_path / "ref.npz")
    np.savez(tmp_path / "cleanfid_style.npz", mu=ref.mu, sigma=ref.sigma)
    assert fid(a, tmp_path / "cleanfid_style.npz", feature_extractor=fx, progress=False) == pytest.approx(
        fid(a, b, feature_extractor=fx, progress=False), rel=1e-9)
    with pytest.raises(ConfigError, match="feats"):
        kid(a, tmp_path / "cleanfid_style.npz", feature_extractor=fx, progress=False)


def test_bad_inputs_are_one_line_errors(folders, tmp_path):
    a, _, _ = folders
    save_images(tmp_path / "one", 1, 0, 0)
    with pytest.raises(ConfigError, match="at least 2"):
        fid(a, tmp_path / "one", feature_extractor=Projection(), progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        fid(a, tmp_path / "nowhere", feature_extractor=Projection(), progress=False)
    np.savez(tmp_path / "wide.npz", mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ConfigError, match="8-d features"):
        fid(a, tmp_path / "wide.npz", feature_extractor=Projection(), progress=False)
    with pytest.raises(ConfigError, match="mode"):
        fid(a, a, mode="legacy_pytorch", progress=False)


class _Layers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 4 * 4, 2048)

    def forward(self, x):
        return torch.tanh(self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1)))[:, :, None, None]  # (B, 2048, 1, 1)


class _FakeInception(torch.nn.Module):
    """The interface clean-fid uses of inception-2015-12-05.pt: `.layers(x)` and `forward(x, return_features)`."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x, return_features: bool = False):
        return self.layers(F.interpolate(x, size=(299, 299), mode="bilinear"))


def test_default_inception_path_runs_clean_fid_resizing(folders, tmp_path):
    from cleanfid.fid import get_folder_features

    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    a = folders[0]
    fa = folder_features(a, inception_weights=path, batch_size=5, device="cpu", progress=False)
    assert fa.feats.shape == (12, 2048)
    # clean-fid's own folder loop with the same network gives the same features
    net = fid_module.inception("clean", "cpu", path)
    ref = get_folder_features(str(a), net, num_workers=0, batch_size=5, device=torch.device("cpu"), verbose=False)
    np.testing.assert_allclose(fa.feats, ref, rtol=1e-5, atol=1e-4)


def test_offline_without_inception_weights(no_caches, folders, monkeypatch):  # noqa: F811
    monkeypatch.setattr(fid_module, "INCEPTION_SEARCH", [])
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        fid(*folders[:2], progress=False)
    assert_one_line_fast(e, t, "inception-2015-12-05.pt", fid_module.INCEPTION_URL)


def test_low_rank_frechet_equals_clean_fids_sqrtm_when_images_are_fewer_than_dimensions():
    import numpy as np
    from cleanfid.fid import frechet_distance

    from steercore.scorers.fid import FeatureSet, frechet

    rng = np.random.default_rng(0)
    a = FeatureSet.from_features(rng.normal(size=(7, 64)), "a")
    b = FeatureSet.from_features(rng.normal(size=(5, 64)) * 1.5 + 0.3, "b")
    assert frechet(a, b) == pytest.approx(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), rel=1e-6)
    assert frechet(a, a) == pytest.approx(0, abs=1e-9)
    big = FeatureSet.from_features(rng.normal(size=(80, 64)), "big")  # n ≥ d: clean-fid's path
    assert frechet(big, a) == pytest.approx(frechet_distance(big.mu, big.sigma, a.mu, a.sigma), rel=1e-9)
