"""Matrix functions of a covariance: the pseudo-inverse square roots that whiten activations, the
regularisations of Σ that tame a covariance estimated from few rows, and the checks that a matrix is a
covariance at all."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from steercore.core.errors import ConfigError

# "Numerically zero" relative to the data's own scale: √eps of float64 (1.5e-8) sits far above the round-off
# of a covariance or a mean (≈ D·eps) and far below any real concept offset or spectral gap.
RTOL = torch.finfo(torch.float64).eps ** 0.5

PRECISIONS = ("float32", "float64")
"""Precision of the batch products a covariance was accumulated with (core/stats.py); it sets the cut-off
below which an eigenvalue is round-off."""

REGULARIZATIONS = ("none", "oas", "ridge", "floor")


@dataclass(frozen=True)
class Regularization:
    """A spectral regularisation of Σ = Q diag(λ) Qᵀ, applied to the eigenvalues (one `eigh` for all):

    - none:  λ
    - oas:   (1 − ρ)·λ + ρ·λ̄, the Oracle-Approximating Shrinkage towards λ̄·I (λ̄ = tr Σ / D) with the
             analytic ρ of Chen et al. (2010) from Σ and the sample count n alone. Ledoit–Wolf's intensity
             needs fourth moments Σᵢ‖xᵢ‖⁴ that the streamed statistics do not keep; OAS needs only Σ and n
             (and is the better estimator for Gaussian data). `amount` is unused (must be 0).
    - ridge: λ + r·λ̄ (Σ + λI with λ relative to the spectrum: r = `amount`)
    - floor: max(λ, f·λ_max) (eigenvalues below f·λ_max raised to it: f = `amount`)

    amount → 0 (and `none`) leaves Σ as it is.
    """

    kind: str = "none"
    amount: float = 0.0

    def __post_init__(self):
        if self.kind not in REGULARIZATIONS:
            raise ConfigError(f"unknown covariance regularisation '{self.kind}'; choose one of "
                              f"{', '.join(REGULARIZATIONS)}")
        if not (isinstance(self.amount, (int, float)) and not isinstance(self.amount, bool)
                and 0 <= self.amount < float("inf")):
            raise ConfigError(f"covariance regularisation amount must be a finite number >= 0, got {self.amount!r}")
        if self.kind == "oas" and self.amount:
            raise ConfigError("covariance regularisation 'oas' sets its own intensity from Σ and n; "
                              f"leave amount at 0 (got {self.amount})")
        if self.kind == "floor" and self.amount > 1:
            raise ConfigError(f"covariance regularisation 'floor' takes a fraction f <= 1 of λ_max, got {self.amount}")

    @property
    def label(self) -> str:
        return self.kind if self.kind in ("none", "oas") else f"{self.kind}{self.amount:g}"

    def shrinkage(self, lam: Tensor, n: int | None) -> float:
        """OAS intensity ρ ∈ [0, 1] from the eigenvalues lam [D] (≥ 0) of a covariance of n samples."""
        if n is None or n < 2:
            raise ConfigError(f"covariance regularisation 'oas' needs the sample count n ≥ 2 of Σ, got {n}")
        D = lam.shape[-1]
        tr, tr2 = lam.sum(), (lam * lam).sum()  # tr Σ, tr Σ²
        den = (n + 1 - 2 / D) * (tr2 - tr * tr / D)
        if not den > 0:  # Σ ∝ I already: nothing to shrink
            return 0.0
        return float(torch.clamp(((1 - 2 / D) * tr2 + tr * tr) / den, max=1.0))

    def apply(self, lam: Tensor, n: int | None = None) -> Tensor:
        """The regularised eigenvalues [D] of non-negative eigenvalues lam [D]."""
        if self.kind == "none":
            return lam
        if self.kind == "oas":
            rho = self.shrinkage(lam, n)
            return (1 - rho) * lam + rho * lam.mean()
        if self.kind == "ridge":
            return lam + self.amount * lam.mean()
        return lam.clamp_min(self.amount * lam.max())  # floor


NO_REGULARIZATION = Regularization()


def check_finite(name: str, t: Tensor) -> None:
    """One line naming `name` and how many of its entries are NaN or ±inf."""
    bad = ~torch.isfinite(t)
    if bad.any():
        nan = int(torch.isnan(t).sum())
        raise ConfigError(f"{name} has {int(bad.sum())} non-finite entries ({nan} NaN, {int(bad.sum()) - nan} inf) "
                          f"of {t.numel()}; recompute the statistics it came from")


def checked_eigh(sigma: Tensor, name: str = "covariance Σ") -> tuple[Tensor, Tensor]:
    """(λ [D] ascending, clipped at 0; Q [D, D]) of a symmetric PSD Σ, or one ConfigError naming the cause:
    NaN/inf, visibly asymmetric, an eigenvalue below −D·eps(float32)·λ_max (beyond the statistics'
    round-off) or all zero."""
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
    return lam.clamp_min(0), Q


def cutoff(lam_max: Tensor, dim: int, precision: str = "float32") -> Tensor:
    """The eigenvalue at or below which Σ's spectrum is round-off: D·eps·λ_max, with eps of the precision the
    statistics were accumulated in (the `pinv` rule, made to follow the data: float32 batch products leave
    null directions at ~±D·eps(float32)·λ_max, which a float64 cut-off would whiten up by 1/√λ)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown statistics precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    return lam_max * dim * torch.finfo(getattr(torch, precision)).eps


def regularized_covariance(sigma: Tensor, *, precision: str = "float32",
                           regularization: Regularization = NO_REGULARIZATION, n: int | None = None,
                           name: str = "covariance Σ") -> Tensor:
    """The covariance a method is fitted with: Σ [D, D] (float64) with its round-off directions set exactly to
    zero (eigenvalues at or below `cutoff`, with the eps of the statistics' `precision`) and its spectrum
    regularised (`Regularization`; n = Σ's sample count, for OAS). The cut-off comes first, so a ridge or floor
    lifts the null directions of a rank-deficient Σ to the regularised level, not round-off of either sign."""
    lam, Q = checked_eigh(sigma, name)  # [D], [D, D]
    lam = torch.where(lam > cutoff(lam[-1], lam.shape[-1], precision), lam, torch.zeros_like(lam))
    lam = regularization.apply(lam, n)
    return (Q * lam) @ Q.mT


def psd_sqrt_pair(sigma: Tensor, name: str = "covariance Σ", *, precision: str = "float64") -> tuple[Tensor, Tensor]:
    """Return (Σ^{1/2}, Σ^{-1/2}) of a symmetric positive semi-definite Σ [D, D] from one `eigh`.

    Eigenvalues at or below `cutoff` (D·eps·λ_max; eps of float64 by default, the cut-off `torch.linalg.pinv`
    uses, for a Σ taken as exact, e.g. one from `regularized_covariance`) count as zero, and so do negative
    ones from round-off: Σ^{-1/2} is then the pseudo-inverse square root, and Σ^{1/2}Σ^{-1/2} is the
    orthogonal projector onto the support of Σ. Pass the statistics' `precision` ("float32" for the cov
    stage's float32 batch products) for a Σ straight from statistics. A Σ that is not a covariance raises
    one ConfigError (`checked_eigh`).
    """
    lam, Q = checked_eigh(sigma, name)
    keep = lam > cutoff(lam[-1], lam.shape[-1], precision)
    safe = torch.where(keep, lam, torch.ones_like(lam))  # avoid 0^-1/2 before masking
    root = torch.where(keep, safe.sqrt(), torch.zeros_like(lam))
    inv_root = torch.where(keep, safe.rsqrt(), torch.zeros_like(lam))
    return (Q * root) @ Q.mT, (Q * inv_root) @ Q.mT
