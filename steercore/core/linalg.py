"""Matrix functions of a covariance: the pseudo-inverse square roots that whiten activations, and the checks
that a matrix is a covariance at all."""

import torch
from torch import Tensor

from steercore.core.errors import ConfigError

# "Numerically zero" relative to the data's own scale: √eps of float64 (1.5e-8) sits far above the round-off
# of a covariance or a mean (≈ D·eps) and far below any real concept offset or spectral gap.
RTOL = torch.finfo(torch.float64).eps ** 0.5


def check_finite(name: str, t: Tensor) -> None:
    """One line naming `name` and how many of its entries are NaN or ±inf."""
    bad = ~torch.isfinite(t)
    if bad.any():
        nan = int(torch.isnan(t).sum())
        raise ConfigError(f"{name} has {int(bad.sum())} non-finite entries ({nan} NaN, {int(bad.sum()) - nan} inf) "
                          f"of {t.numel()}; recompute the statistics it came from")


def psd_sqrt_pair(sigma: Tensor, name: str = "covariance Σ") -> tuple[Tensor, Tensor]:
    """Return (Σ^{1/2}, Σ^{-1/2}) of a symmetric positive semi-definite Σ [D, D] from one `eigh`.

    Eigenvalues at or below λ_max·D·eps (the cut-off `torch.linalg.pinv` uses) count as zero, and so do
    negative ones from round-off: Σ^{-1/2} is then the pseudo-inverse square root, and Σ^{1/2}Σ^{-1/2} is
    the orthogonal projector onto the support of Σ. A Σ with NaN/inf, visibly asymmetric, with an
    eigenvalue below −D·eps(float32)·λ_max (beyond the statistics' round-off) or all zero raises one ConfigError
    naming the cause.
    """
    check_finite(name, sigma)
    scale = sigma.abs().max()
    if (sigma - sigma.mT).abs().max() > RTOL * scale:
        raise ConfigError(f"{name} is not symmetric (max |Σ − Σᵀ| = {(sigma - sigma.mT).abs().max():.3g}, "
                          f"max |Σ| = {scale:.3g}); it is not a covariance")
    sigma = 0.5 * (sigma + sigma.mT)  # exact symmetry; eigh reads one triangle only
    lam, Q = torch.linalg.eigh(sigma)  # lam [D] ascending, Q [D, D]
    if not lam[-1] > 0:
        raise ConfigError(f"{name} is zero (largest eigenvalue {lam[-1]:.3g}): the neutral samples do not vary")
    # Statistics accumulate float32 batch products (core/stats.py), so a neutral Σ carries round-off of order
    # D·eps(float32)·λ_max (seen: −2.9e-8 against λ_max 1.29 on testbed-lm); a matrix that is not a covariance
    # is off by far more than that.
    if lam[0] < -sigma.shape[-1] * torch.finfo(torch.float32).eps * lam[-1]:
        raise ConfigError(f"{name} is not positive semi-definite (smallest eigenvalue {lam[0]:.3g}, largest "
                          f"{lam[-1]:.3g}); it is not a covariance")
    tol = lam[-1] * sigma.shape[-1] * torch.finfo(lam.dtype).eps
    keep = lam > tol
    safe = torch.where(keep, lam, torch.ones_like(lam))  # avoid 0^-1/2 before masking
    root = torch.where(keep, safe.sqrt(), torch.zeros_like(lam))
    inv_root = torch.where(keep, safe.rsqrt(), torch.zeros_like(lam))
    return (Q * root) @ Q.mT, (Q * inv_root) @ Q.mT
