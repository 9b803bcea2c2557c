"""The numerical checks of the fitters: one relative rule (RTOL = √eps) for all methods, with positive
controls so that the checks never refuse a genuine (small, ill-conditioned but valid) problem."""

import pytest
import torch

from steercore.core.errors import ConfigError
from steercore.core.linalg import RTOL, psd_sqrt_pair
from steercore.core.methods import METHODS, fit_method, fit_midsteer

f64 = torch.float64


def data(D=8, rank=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    rank = rank or D
    basis = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=f64))[0]
    X = torch.randn(400, rank, generator=g, dtype=f64) @ basis[:, :rank].T
    return X.mean(0), torch.cov(X.T), basis


@pytest.mark.parametrize("method", ["casteer", "casteer_add", "leace", "midsteer"])
def test_every_method_refuses_identical_means_with_the_same_message(method):
    mu, sigma, basis = data()
    s = mu + basis[:, 0]
    with pytest.raises(ConfigError, match=f"^{method}: the .* are identical .*direction is zero"):
        fit_method(method, source=s, target=s * (1 + 1e-14), mu=mu, sigma=sigma)


@pytest.mark.parametrize("method", ["casteer", "casteer_add", "leace", "midsteer"])
def test_small_but_real_differences_are_accepted(method):
    mu, sigma, basis = data()
    s = mu + basis[:, 0]
    m = fit_method(method, source=s, target=s + 1e-6 * basis[:, 1], mu=mu, sigma=sigma)  # 1e-6 ≫ RTOL
    x = torch.randn(3, 8, dtype=f64)
    assert torch.isfinite(m(x, 1.0)).all()


def test_null_space_source_used_to_give_a_huge_map_and_is_now_refused():
    mu, sigma, basis = data(D=8, rank=4)
    s = mu + basis[:, 6] + 1e-12 * basis[:, 0]  # offset (numerically) in the null space of Σ
    t = mu + basis[:, 0]
    with pytest.raises(ConfigError, match="midsteer: the source−μ direction lies outside the support of Σ"):
        fit_midsteer(s, mu, sigma, t)


def test_offset_partly_outside_the_support_is_fine_and_leaves_mu_fixed():
    mu, sigma, basis = data(D=8, rank=4)
    s, t = mu + basis[:, 0] + basis[:, 6], mu + basis[:, 1]  # half of s − μ is inside the support
    m = fit_midsteer(s, mu, sigma, t)
    torch.testing.assert_close(m(mu[None], 1.0)[0], mu)
    assert m.v.norm() < 1e3


def test_ill_conditioned_but_valid_covariance_is_accepted():
    mu, _, basis = data()
    lam = torch.logspace(0, -10, 8, dtype=f64)  # condition number 1e10
    sigma = (basis * lam) @ basis.T
    m = fit_method("leace", source=mu + basis[:, 0], target=mu + basis[:, 1], mu=mu, sigma=sigma)
    assert torch.isfinite(m.u).all() and torch.isfinite(m.v).all()


def test_round_off_negative_eigenvalues_are_not_an_error_but_real_ones_are():
    _, sigma, basis = data(D=8, rank=3)  # rank-deficient: its zero eigenvalues come out ~ ±1e-17
    assert torch.linalg.eigvalsh(sigma)[0] > -RTOL * torch.linalg.eigvalsh(sigma)[-1]
    root, inv_root = psd_sqrt_pair(sigma)
    projector = root @ inv_root
    torch.testing.assert_close(projector @ projector, projector)
    with pytest.raises(ConfigError, match="not positive semi-definite \\(smallest eigenvalue -"):
        psd_sqrt_pair(sigma - 1e-3 * torch.eye(8, dtype=f64))


def test_inputs_are_not_mutated_by_the_checks():
    mu, sigma, basis = data()
    s, t = mu + basis[:, 0], mu + basis[:, 1]
    before = [x.clone() for x in (s, t, mu, sigma)]
    for method in METHODS:
        fit_method(method, source=s, target=t, mu=mu, sigma=sigma)
    for a, b in zip(before, (s, t, mu, sigma)):
        assert torch.equal(a, b)


def test_a_rank_deficient_covariance_from_float32_statistics_is_accepted():
    """The cov stage accumulates float32 batch products: its Σ's null directions come out at ≈ −4e-8·λ_max here
    (beyond √eps, the float64 round-off rule that once refused the default run), well inside D·eps(float32)."""
    from steercore.core.stats import Moments

    g = torch.Generator().manual_seed(0)
    X = (torch.randn(400, 3, generator=g) @ torch.randn(3, 64, generator=g) * 0.3 + 5).float()  # rank 3 in D = 64
    m = Moments(64)
    m.update(X[:200])
    m.update(X[200:])
    lam = torch.linalg.eigvalsh(0.5 * (m.scatter + m.scatter.mT))
    assert lam[0] < -RTOL * lam[-1]  # the case the float64 rule refused
    root, inv_root = psd_sqrt_pair(m.scatter / (m.n - 1))
    assert torch.isfinite(root).all() and torch.isfinite(inv_root).all()
