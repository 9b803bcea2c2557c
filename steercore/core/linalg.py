"""Matrix functions of a covariance: the pseudo-inverse square roots that whiten activations."""

import torch
from torch import Tensor


def psd_sqrt_pair(sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Return (Σ^{1/2}, Σ^{-1/2}) of a symmetric positive semi-definite Σ [D, D] from one `eigh`.

    Eigenvalues at or below λ_max·D·eps (the cut-off `torch.linalg.pinv` uses) count as zero, and so do
    negative ones from round-off: Σ^{-1/2} is then the pseudo-inverse square root, and Σ^{1/2}Σ^{-1/2} is
    the orthogonal projector onto the support of Σ.
    """
    sigma = 0.5 * (sigma + sigma.mT)  # exact symmetry; eigh reads one triangle only
    lam, Q = torch.linalg.eigh(sigma)  # lam [D] ascending, Q [D, D]
    tol = lam[-1].clamp_min(0) * sigma.shape[-1] * torch.finfo(lam.dtype).eps
    keep = lam > tol
    safe = torch.where(keep, lam, torch.ones_like(lam))  # avoid 0^-1/2 before masking
    root = torch.where(keep, safe.sqrt(), torch.zeros_like(lam))
    inv_root = torch.where(keep, safe.rsqrt(), torch.zeros_like(lam))
    return (Q * root) @ Q.mT, (Q * inv_root) @ Q.mT
