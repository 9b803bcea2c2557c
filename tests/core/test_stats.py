"""Streaming statistics: the Chan update, shard merges, the three aggregation modes and held-back small calls."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steercore import ActivationStats, ConfigError, Moments, ShapeMismatchError, aggregate

f64 = torch.float64


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6), D=st.integers(1, 16))
def test_merge_of_k_shards_equals_covariance_of_concatenated_data(seed, k, D):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 40, (k,), generator=g).tolist()
    shards = [torch.randn(n, D, generator=g, dtype=f64) * 5 + 100 for n in sizes]  # large offset: stability
    parts = []
    for X in shards:
        m = Moments(D)
        for chunk in X.split(7):  # several batches per shard
            m.update(chunk)
        parts.append(m)
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    X = torch.cat(shards)
    assert merged.n == X.shape[0]
    assert rel(merged.mean, X.mean(0)) <= 1e-12
    if X.shape[0] > 1:
        assert rel(merged.cov, torch.cov(X.T).reshape(D, D)) <= 1e-10


def test_float32_input_is_accumulated_in_float64():
    X = torch.randn(1000, 8) + 1e4
    m = Moments(8)
    for chunk in X.split(100):
        m.update(chunk)
    assert m.mean.dtype == f64
    assert rel(m.cov, torch.cov(X.to(f64).T)) <= 1e-6  # float32 batch products, float64 combine


def test_aggregation_modes_respect_left_and_right_padding():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # [B=2, T=4, D=3]
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(aggregate(x, "all", right), torch.cat([x[0, :3], x[1, :2]]))
    assert torch.equal(aggregate(x, "last", right), torch.stack([x[0, 2], x[1, 1]]))
    assert torch.equal(aggregate(x, "last", left), torch.stack([x[0, 3], x[1, 3]]))
    torch.testing.assert_close(aggregate(x, "average", left), torch.stack([x[0, 1:].mean(0), x[1, 2:].mean(0)]))
    assert torch.equal(aggregate(x, "last"), x[:, -1])
    assert torch.equal(aggregate(x, "average"), x.mean(1))
    assert aggregate(x, "all").shape == (8, 3)
    with pytest.raises(ConfigError, match="unknown aggregation 'mean'; choose one of all, average, last"):
        aggregate(x, "mean")
    with pytest.raises(ShapeMismatchError, match="attention mask is \\[2, 3\\]"):
        aggregate(x, "all", right[:, :3])


def test_activation_stats_per_site_and_step_and_shard_merge():
    g = torch.Generator().manual_seed(0)
    calls = [(step, site, torch.randn(3, 5, 4 if site == "a" else 6, generator=g))
             for step in (0, 1) for site in ("a", "b") for _ in range(4)]
    whole = ActivationStats("neutral", "all")
    left, right = ActivationStats("neutral", "all"), ActivationStats("neutral", "all")
    for i, (step, site, x) in enumerate(calls):
        whole.add(step, site, x)
        (left if i % 3 else right).add(step, site, x)
    merged = left.merge(right)
    assert merged.sites == {"a": 4, "b": 6} and merged.steps == [0, 1]
    for key, m in whole.moments.items():
        assert merged.moments[key].n == m.n == 60
        assert rel(merged.moments[key].cov, m.cov) <= 1e-10
    rows = torch.cat([x.reshape(-1, 4) for step, site, x in calls if (step, site) == (1, "a")]).to(f64)
    assert rel(whole.cov(1, "a"), torch.cov(rows.T)) <= 1e-6  # float32 batch products (the default)


def test_concept_means_track_no_covariance_and_single_step_serves_all_steps():
    c = ActivationStats("concept", "average")
    c.add(0, "up.0", torch.ones(2, 5, 3))
    assert c.moments[(0, "up.0")].scatter is None
    assert c.count(7, "up.0") == 2  # a single stored step serves every generation step
    torch.testing.assert_close(c.mean(3, "up.0"), torch.ones(3, dtype=f64))
    with pytest.raises(ConfigError, match="without covariance"):
        c.cov(0, "up.0")
    with pytest.raises(ShapeMismatchError, match="no site 'down.0'"):
        c.mean(0, "down.0")
    with pytest.raises(ConfigError, match="cannot merge concept/average statistics with neutral/all"):
        c.merge(ActivationStats("neutral", "all"))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), D=st.integers(2, 48), batches=st.lists(st.integers(1, 600), min_size=1, max_size=5))
def test_float32_batch_scatter_matches_the_float64_pass_on_large_means_and_wide_range(seed, D, batches):
    # activations as a model gives them (float32): mean 1e3, std from 1e-2 to 1 across directions
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-2, 0, D, dtype=f64)  # [D]
    rows = [(1e3 + torch.randn(n, D, generator=g, dtype=f64) * scales).to(torch.float32) for n in batches]
    fast, exact = Moments(D, precision="float32"), Moments(D, precision="float64")
    for X in rows:
        fast.update(X)
        exact.update(X)
    assert fast.n == exact.n == sum(batches)
    assert rel(fast.mean, exact.mean) <= 1e-12
    if fast.n > 1:
        assert rel(fast.scatter, exact.scatter) <= 1e-6  # the bound (worst of 300 random draws: 5.9e-7)
        # the std-1e-2 end on its own scale, so no error hides behind the large entries: float32 accumulation
        # over a batch of up to 600 rows leaves ~1e-6 there (worst of 300 draws: 2.1e-6); an uncentred float32
        # pass is off by orders of magnitude more (see the control below)
        low = D // 2
        assert rel(fast.scatter[:low, :low], exact.scatter[:low, :low]) <= 1e-5 if low else True


def test_the_property_above_catches_an_uncentred_float32_pass():
    g = torch.Generator().manual_seed(0)
    scales = torch.logspace(-2, 0, 8, dtype=f64)
    X = (1e3 + torch.randn(300, 8, generator=g, dtype=f64) * scales).to(torch.float32)
    exact = Moments(8, precision="float64")
    exact.update(X)
    m = X.mean(0)
    naive = (X.mT @ X - 300 * torch.outer(m, m)).to(f64)  # Σ xxᵀ − n·mmᵀ in float32: cancels 1e6-sized terms
    assert rel(naive[:4, :4], exact.scatter[:4, :4]) > 1e-3


def test_float32_scatter_stays_exact_when_the_caller_allows_tf32():
    X = (1e3 + torch.randn(512, 16, dtype=f64) * 1e-2).to(torch.float32)
    exact = Moments(16, precision="float64")
    exact.update(X)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        fast = Moments(16)
        fast.update(X)
        assert torch.get_float32_matmul_precision() == "medium"  # the caller's setting is put back
    finally:
        torch.set_float32_matmul_precision(previous)
    assert rel(fast.scatter, exact.scatter) <= 1e-6


def test_precision_is_checked_and_survives_merges():
    with pytest.raises(ConfigError, match="unknown statistics precision 'bf16'; choose one of float32, float64"):
        ActivationStats("neutral", precision="bf16")
    a, b = ActivationStats("neutral", precision="float64"), ActivationStats("neutral", precision="float64")
    a.add(0, "s", torch.randn(5, 3))
    b.add(0, "s", torch.randn(4, 3))
    merged = a.merge(b)
    assert merged.precision == "float64" and merged.moments[(0, "s")].precision == "float64"


def _calls(n_calls, rows, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(1e3 + torch.randn(rows, D, generator=g, dtype=f64) * torch.logspace(-2, 0, D, dtype=f64))
            .to(torch.float32) for _ in range(n_calls)]


def test_small_calls_are_held_back_until_a_site_has_D_rows_then_folded_in_as_one_batch(monkeypatch):
    D, calls = 16, _calls(10, 3, 16)
    updates = []
    real = Moments.update
    monkeypatch.setattr(Moments, "update", lambda self, X: (updates.append(X.shape[0]), real(self, X))[1])
    stats = ActivationStats("neutral", "all")
    for X in calls:
        stats.add(0, "s", X)
    assert updates == [18]  # six calls of 3 rows reach D = 16; the last four wait
    mean, cov = stats.mean(0, "s"), stats.cov(0, "s")  # a reader folds them in
    assert updates == [18, 12] and stats.count(0, "s") == 30
    # the same two batches through Moments give the same bits, and the float64 pass to the bound
    grouped = Moments(D)
    grouped.update(torch.cat(calls[:6]))
    grouped.update(torch.cat(calls[6:]))
    assert torch.equal(mean, grouped.mean) and torch.equal(cov, grouped.cov)
    exact = Moments(D, precision="float64")
    exact.update(torch.cat(calls))
    assert rel(cov, exact.cov) <= 1e-6


def test_buffer_mb_zero_folds_every_call_in_at_once_and_the_budget_bounds_held_rows():
    calls = _calls(5, 3, 16)
    unbuffered, per_call = ActivationStats("neutral", "all", buffer_mb=0), Moments(16)
    for X in calls:
        unbuffered.add(0, "s", X)
        per_call.update(X)
        assert not unbuffered._pending
    assert torch.equal(unbuffered.cov(0, "s"), per_call.cov)
    # 3 rows × 16 float32 = 192 bytes a call; a budget of 500 bytes holds two calls over all sites, never three
    tight = ActivationStats("neutral", "all", buffer_mb=500 / 2**20)
    for i, X in enumerate(calls * 2):
        tight.add(0, f"site{i % 3}", X)
        assert tight._pending_bytes <= 500
    assert sum(tight.count(0, f"site{i}") for i in range(3)) == 30
    with pytest.raises(ConfigError, match="buffer_mb"):
        ActivationStats(buffer_mb=-1)


def test_held_back_rows_reach_the_file_and_merges(tmp_path):
    from steercore import load_stats, save_stats

    a, b = ActivationStats("neutral", "all"), ActivationStats("neutral", "all")
    for X in _calls(3, 2, 8):
        a.add(0, "s", X)
        b.add(0, "s", X + 1)
    assert a._pending  # 6 rows < D = 8: nothing folded in yet
    save_stats(a, tmp_path / "a.safetensors")
    assert load_stats(tmp_path / "a.safetensors").count(0, "s") == 6
    assert a.merge(b).count(0, "s") == 12
    with pytest.raises(ShapeMismatchError, match=r"rows of s must be \[N, 8\]"):
        a.add(0, "s", torch.zeros(2, 9))
