"""Regularised covariances and the round-off cut-off: regularisation → 0 recovers the unregularised maps, the
maps keep their defining properties under every regularised Σ, OAS agrees with scikit-learn's estimator, and
the cut-off follows the precision the statistics were accumulated in."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steercore import ConfigError, fit_leace, fit_method, fit_midsteer
from steercore.core.linalg import Regularization, psd_sqrt_pair, regularized_covariance
from steercore.core.stats import Moments

f64 = torch.float64
REGULARIZED = [Regularization("oas"), Regularization("ridge", 0.1), Regularization("ridge", 3.0),
               Regularization("floor", 0.05), Regularization("floor", 0.5)]


def sample_problem(seed: int, D: int, n: int):
    """μ, Σ and n of n correlated rows (Σ with a wide spectrum), and source/target means."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=f64) * torch.logspace(0, -2, D, dtype=f64)
    X = torch.randn(n, D, generator=g, dtype=f64) @ A.T + 2
    mu, sigma = X.mean(0), torch.cov(X.T)
    s = mu + A @ torch.randn(D, generator=g, dtype=f64)
    t = mu + A @ torch.randn(D, generator=g, dtype=f64)
    return mu, sigma, s, t, X


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("method", ["leace", "midsteer"])
@pytest.mark.parametrize("kind", ["none", "ridge", "floor"])
def test_vanishing_regularisation_recovers_the_unregularised_map(method, kind):
    """Σ of condition number 3e5: the map moves linearly in the amount (ridge r shifts Σ^{-1} by ~r·κ) and
    reaches the unregularised map to round-off as the amount goes to 0."""
    mu, sigma, s, t, X = sample_problem(0, 12, 200)
    today = (fit_leace if method == "leace" else fit_midsteer)(s, mu, sigma, t)
    errors = []
    for amount in ([0.0] if kind == "none" else [1e-4, 1e-7, 1e-10, 1e-16]):
        m = fit_method(method, source=s, target=t, mu=mu, sigma=sigma, regularization=Regularization(kind, amount),
                       n=200, precision="float64")
        errors.append(max(_rel(m.u, today.u), _rel(m.v, today.v), _rel(m(X[:5], 1.5), today(X[:5], 1.5))))
    assert errors[-1] <= 1e-10, errors
    assert errors == sorted(errors, reverse=True), errors


def test_regularisation_changes_the_map():
    """A positive control for the test above: a real amount gives another map."""
    mu, sigma, s, t, _ = sample_problem(0, 12, 200)
    today = fit_leace(s, mu, sigma, t)
    for reg in REGULARIZED:
        m = fit_method("leace", source=s, target=t, mu=mu, sigma=sigma, regularization=reg, n=200)
        assert (m.v - today.v).norm() > 1e-3 * today.v.norm(), reg


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), D=st.integers(2, 16), k=st.integers(0, len(REGULARIZED) - 1))
def test_maps_keep_their_defining_properties_under_every_regularised_sigma(seed, D, k):
    reg = REGULARIZED[k]
    mu, sigma, s, t, X = sample_problem(seed, D, 3 * D + 2)
    mid = fit_method("midsteer", source=s, target=t, mu=mu, sigma=sigma, regularization=reg, n=X.shape[0])
    assert ((mid(s) - t).norm() / t.norm()).item() <= 1e-8  # s ↦ t at β = 1
    assert ((mid(mu) - mu).norm() / mu.norm()).item() <= 1e-10  # μ fixed
    lea = fit_method("leace", source=s, target=t, mu=mu, sigma=sigma, regularization=reg, n=X.shape[0])
    torch.testing.assert_close(lea(s), lea(t), rtol=1e-8, atol=1e-8)  # source and target meet
    # erasure in its own metric: the regularised whitened read-out of every edited row is zero
    sigma_r = regularized_covariance(sigma, regularization=reg, n=X.shape[0])
    _, inv_root = psd_sqrt_pair(sigma_r)
    d_w = inv_root @ (s - t)
    c = ((lea(X) - mu) @ inv_root) @ d_w
    assert c.abs().max() <= 1e-8 * ((X - mu) @ inv_root @ d_w).abs().max()


def test_oas_shrinkage_matches_scikit_learn():
    """Chen et al.'s eq. (23); scikit-learn drops its 2/p terms, so the two agree to O(1/p)."""
    from sklearn.covariance import OAS

    for seed, (D, n) in enumerate([(60, 40), (100, 300), (200, 150)]):
        *_, X = sample_problem(seed, D, n)
        sigma = torch.cov(X.T)
        lam = torch.linalg.eigvalsh(sigma).clamp_min(0)
        rho = Regularization("oas").shrinkage(lam, n)
        ref = OAS().fit(X.numpy()).shrinkage_
        assert 0 < rho <= 1 and abs(rho - ref) <= 3 / D * ref, (D, n, rho, ref)
        shrunk = regularized_covariance(sigma, regularization=Regularization("oas"), n=n, precision="float64")
        expected = (1 - rho) * sigma + rho * sigma.trace() / D * torch.eye(D, dtype=f64)
        torch.testing.assert_close(shrunk, expected, rtol=1e-9, atol=1e-12)


def test_ridge_and_floor_act_on_the_spectrum_as_documented():
    mu, sigma, *_ = sample_problem(1, 10, 100)
    lam = torch.linalg.eigvalsh(sigma)
    ridge = torch.linalg.eigvalsh(regularized_covariance(sigma, regularization=Regularization("ridge", 0.5)))
    torch.testing.assert_close(ridge, lam + 0.5 * lam.mean(), rtol=1e-9, atol=1e-12)
    floor = torch.linalg.eigvalsh(regularized_covariance(sigma, regularization=Regularization("floor", 0.2)))
    torch.testing.assert_close(floor, lam.clamp_min(0.2 * lam[-1]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind, amount, message", [("lw", 0.1, "unknown covariance regularisation 'lw'"),
                                                   ("ridge", -1, "amount must be a finite number >= 0"),
                                                   ("ridge", float("nan"), "amount must be a finite number"),
                                                   ("oas", 0.3, "'oas' sets its own intensity"),
                                                   ("floor", 2.0, "fraction f <= 1")])
def test_bad_regularisations_are_one_line(kind, amount, message):
    with pytest.raises(ConfigError, match=message):
        Regularization(kind, amount)


def test_oas_needs_the_sample_count():
    mu, sigma, s, t, _ = sample_problem(0, 6, 50)
    with pytest.raises(ConfigError, match="'oas' needs the sample count"):
        fit_method("leace", source=s, target=t, mu=mu, sigma=sigma, regularization=Regularization("oas"))


def test_float32_cut_off_keeps_rank_deficient_statistics_from_being_whitened_up():
    """Σ of rank 3 in D = 64, accumulated like the cov stage (float32 batch products over two batches). Its
    null directions come out at ~1e-8·λ_max: above the float64 cut-off D·eps64·λ_max, so whitening with it
    treats them as signal and multiplies them by 1/√λ ~ 1e4; the float32 cut-off D·eps32·λ_max zeroes them."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(3, 64, generator=g)
    X = (torch.randn(400, 3, generator=g) @ B * 0.3 + 5).float()
    m = Moments(64)  # float32 batch products, as in the cov stage
    m.update(X[:200])
    m.update(X[200:])
    sigma = m.cov
    lam = torch.linalg.eigvalsh(sigma)
    null = lam[:-3].abs().max() / lam[-1]
    assert 64 * torch.finfo(f64).eps < null < 64 * torch.finfo(torch.float32).eps  # the case at issue
    _, inv64 = psd_sqrt_pair(sigma, precision="float64")
    _, inv32 = psd_sqrt_pair(sigma, precision="float32")
    Q = torch.linalg.qr(B.T.to(f64))[0]  # [64, 3] basis of the true support
    off = torch.eye(64, dtype=f64) - Q @ Q.T  # projector onto the true null space
    gain = lambda inv: torch.linalg.matrix_norm(inv @ off, 2) * lam[-1].sqrt()  # relative whitening gain there
    assert gain(inv64) > 1e2  # before: round-off directions amplified by more than 100× the signal's level
    assert gain(inv32) < 1e-3  # after: they are null
    # the rank is right: Σ^{1/2}Σ^{-1/2} is the projector onto the 3-dimensional support
    root32, _ = psd_sqrt_pair(sigma, precision="float32")
    assert torch.linalg.matrix_rank(root32 @ inv32, atol=1e-6) == 3
    # fit_method reads the statistics' precision the same way (float32 by default)
    s, t = (m.mean + (torch.randn(3, generator=g).double() @ B.double())), m.mean + B[0].double()
    mid32 = fit_method("midsteer", source=s, target=t, mu=m.mean, sigma=sigma)
    mid64 = fit_method("midsteer", source=s, target=t, mu=m.mean, sigma=sigma, precision="float64")
    assert mid32.v.norm() < 0.1 * mid64.v.norm()  # measured: 0.20 vs 7.2
