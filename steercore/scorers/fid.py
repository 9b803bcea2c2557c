"""FID and KID between two image folders, or a folder and reference statistics, with clean-fid.

The reference can be the unsteered images of the same prompts and seeds (as in the paper), a folder of
real images, or a precomputed .npz (`mu`, `sigma`, and `feats` for KID; clean-fid's own stats files
work for FID). Features come from clean-fid's Inception (modes 'clean' and 'legacy_tensorflow') or from
any callable `features(list[PIL.Image]) -> Tensor[N, d]` (the testbed passes its own).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from glob import glob
from pathlib import Path

import numpy as np
import torch

from steercore.core.errors import ConfigError, FileFormatError
from steercore.core.files import atomic_path
from steercore.scorers.common import batched, choose_device, load_image
from steercore.hub import Download, url_file

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_BYTES = 95_600_000  # approximate: 23.9M float32 parameters in TorchScript
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "png", "ppm", "tif", "tiff", "webp")
# Also searched for inception-2015-12-05.pt (after the torch hub folder): clean-fid itself downloads it to /tmp.
INCEPTION_SEARCH = ["/tmp"]


def inception_downloads() -> list[Download]:
    """What `inception()` reads when no weights file is given."""
    return [Download("FID (Inception-v3)", INCEPTION_URL, repo_type="url", search=tuple(INCEPTION_SEARCH),
                     size=INCEPTION_BYTES)]

FeatureFn = Callable[[list], torch.Tensor]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursively), sorted, so features never depend on directory order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"FID: image folder {folder} does not exist")
    files = {Path(f) for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper())
             for f in glob(str(folder / "**" / f"*.{e}"), recursive=True)}
    return sorted(files)


def inception(mode: str = "clean", device: str | torch.device | None = None,
              weights: str | os.PathLike | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """clean-fid's Inception-v3 (TorchScript, 2048-d pool features): x [B, 3, 299, 299] in 0..255 → [B, 2048].
    Weights: `weights` (file), or inception-2015-12-05.pt in the torch hub checkpoints folder or /tmp
    (where clean-fid keeps it), else downloaded from NVIDIA."""
    from cleanfid.inception_torchscript import InceptionV3W

    if mode not in ("clean", "legacy_tensorflow"):
        raise ConfigError(f"FID: mode must be 'clean' or 'legacy_tensorflow', got {mode!r}")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"FID: Inception weights file {path} does not exist")
    else:
        path = url_file(INCEPTION_URL, what="FID (Inception-v3)", search=INCEPTION_SEARCH)
    if path.name != "inception-2015-12-05.pt":  # InceptionV3W only takes a folder holding this name
        raise ConfigError(f"FID: Inception weights must be named inception-2015-12-05.pt, got {path.name}")
    device = choose_device(device)
    net = InceptionV3W(str(path.parent), download=False, resize_inside=mode == "legacy_tensorflow").to(device)
    net.eval()

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(device))

    return features


class FeatureSet:
    """Features of one image set: the rows (for KID) and their mean and covariance (for FID)."""

    def __init__(self, feats: np.ndarray | None, mu: np.ndarray, sigma: np.ndarray, source: str):
        self.feats, self.mu, self.sigma, self.source = feats, mu, sigma, source

    @property
    def n(self) -> int | None:
        return None if self.feats is None else len(self.feats)

    @classmethod
    def from_features(cls, feats: np.ndarray, source: str) -> "FeatureSet":
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or len(feats) < 2:
            raise ConfigError(f"FID: {source} has {len(feats)} image(s); FID/KID need at least 2")
        return cls(feats, feats.mean(0), np.cov(feats, rowvar=False), source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        """Reference statistics from an .npz holding `mu` and `sigma` (and `feats`, needed for KID)."""
        try:
            with np.load(path) as z:
                feats = z["feats"] if "feats" in z else None
                return cls(feats, z["mu"], z["sigma"], str(path))
        except (OSError, ValueError, KeyError) as e:
            raise FileFormatError(f"{path}: not a reference statistics file with mu and sigma ({e})") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write mu, sigma and feats as an .npz (atomically); `fid`/`kid` accept it as reference. Uncompressed:
        zlib gains ~7% on float features and took 2 s per 2048-d covariance (11 of a 19 s baseline_features job)."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma,
                     **({} if self.feats is None else {"feats": self.feats}))


def folder_features(folder: str | os.PathLike, *, feature_extractor: FeatureFn | None = None,
                    mode: str = "clean", batch_size: int = 64, device: str | torch.device | None = None,
                    inception_weights: str | os.PathLike | None = None, progress: bool = True) -> FeatureSet:
    """Features of every image under `folder`, in sorted file order."""
    files = list_images(folder)
    if len(files) < 2:
        raise ConfigError(f"FID: {folder} holds {len(files)} image(s); FID/KID need at least 2")
    if feature_extractor is None:
        from cleanfid.fid import get_files_features

        model = inception(mode, device, inception_weights)
        # clean-fid's own resizing (PIL bicubic to 299 for 'clean'), batching and feature loop.
        feats = get_files_features([str(f) for f in files], model, num_workers=0, batch_size=batch_size,
                                   device=choose_device(device), mode=mode, description=f"FID {folder}",
                                   verbose=progress)
    else:
        chunks = []
        for chunk in batched(files, batch_size, f"FID {folder}", progress):
            out = feature_extractor([load_image(f) for f in chunk])
            chunks.append(torch.as_tensor(out).detach().float().cpu().numpy())
        feats = np.concatenate(chunks)
    if len(feats) != len(files):
        raise ConfigError(f"FID: the feature extractor returned {len(feats)} rows for {len(files)} images")
    return FeatureSet.from_features(feats, str(folder))


def _features(x, **kw) -> FeatureSet:
    if isinstance(x, FeatureSet):
        return x
    if Path(x).suffix == ".npz":
        return FeatureSet.load(x)
    return folder_features(x, **kw)


def _check(a: FeatureSet, b: FeatureSet):
    if a.mu.shape != b.mu.shape:
        raise ConfigError(f"FID: {a.source} has {a.mu.shape[0]}-d features but {b.source} has "
                          f"{b.mu.shape[0]}-d (reference statistics from another feature extractor?)")


def frechet(a: FeatureSet, b: FeatureSet) -> float:
    """||μ_a − μ_b||² + Tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½).

    With per-image features and fewer images than dimensions (e.g. 2 × 10 images of 2048-d Inception features
    per prompt set), Σ = AᵀA with A = (X − μ)/√(n − 1) has rank < n, and Tr (Σ_a Σ_b)^½ is exactly the nuclear
    norm of A_a A_bᵀ (the nonzero eigenvalues of Σ_a Σ_b are the squared singular values of A_a A_bᵀ): an
    n_a × n_b SVD instead of clean-fid's d × d `sqrtm` (about 50 s per pair at d = 2048 on one core).
    Otherwise clean-fid's implementation."""
    from cleanfid.fid import frechet_distance

    _check(a, b)
    d = a.mu.shape[0]
    if a.feats is None or b.feats is None or len(a.feats) + len(b.feats) >= d:
        return float(frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    fa = (a.feats - a.feats.mean(0)) / np.sqrt(len(a.feats) - 1)
    fb = (b.feats - b.feats.mean(0)) / np.sqrt(len(b.feats) - 1)
    tr_sqrt = np.linalg.svd(fa @ fb.T, compute_uv=False).sum()
    diff = a.feats.mean(0) - b.feats.mean(0)
    return float(diff @ diff + (fa * fa).sum() + (fb * fb).sum() - 2 * tr_sqrt)


def kernel(a: FeatureSet, b: FeatureSet, *, num_subsets: int = 100, max_subset_size: int = 1000,
           seed: int = 0) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy/d + 1)³, averaged over random subsets
    (clean-fid's `kernel_distance`, but with a seeded generator so it is reproducible)."""
    if a.feats is None or b.feats is None:
        src = a.source if a.feats is None else b.source
        raise ConfigError(f"KID: {src} has no per-image features (an .npz needs 'feats'); "
                          "recompute it with FeatureSet.save")
    _check(a, b)
    rng = np.random.default_rng(seed)
    d = a.feats.shape[1]
    m = min(len(a.feats), len(b.feats), max_subset_size)
    t = 0.0
    for _ in range(num_subsets):
        x = b.feats[rng.choice(len(b.feats), m, replace=False)]
        y = a.feats[rng.choice(len(a.feats), m, replace=False)]
        k_xx, k_yy, k_xy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        s = k_xx + k_yy
        t += (s.sum() - np.diag(s).sum()) / (m - 1) - k_xy.sum() * 2 / m
    return float(t / num_subsets / m)


def fid(dir_a, dir_b, *, feature_extractor: FeatureFn | None = None, mode: str = "clean",
        batch_size: int = 64, device: str | torch.device | None = None,
        inception_weights: str | os.PathLike | None = None, progress: bool = True) -> float:
    """FID between the images under `dir_a` and `dir_b` (a folder, an .npz of statistics, or a FeatureSet)."""
    kw = dict(feature_extractor=feature_extractor, mode=mode, batch_size=batch_size, device=device,
              inception_weights=inception_weights, progress=progress)
    return frechet(_features(dir_a, **kw), _features(dir_b, **kw))


def kid(dir_a, dir_b, *, feature_extractor: FeatureFn | None = None, mode: str = "clean",
        batch_size: int = 64, device: str | torch.device | None = None,
        inception_weights: str | os.PathLike | None = None, progress: bool = True, seed: int = 0) -> float:
    """KID between `dir_a` and `dir_b` (as for `fid`; an .npz reference needs `feats`)."""
    kw = dict(feature_extractor=feature_extractor, mode=mode, batch_size=batch_size, device=device,
              inception_weights=inception_weights, progress=progress)
    return kernel(_features(dir_a, **kw), _features(dir_b, **kw), seed=seed)


def reference_statistics(folder: str | os.PathLike, out: str | os.PathLike, **kw) -> FeatureSet:
    """Features of a folder of real images (e.g. COCO), saved as an .npz reference for `fid`/`kid`."""
    stats = folder_features(folder, **kw)
    stats.save(out)
    return stats


__all__ = ("FeatureSet", "fid", "kid", "folder_features", "frechet",
                          "kernel", "inception", "list_images", "reference_statistics")
