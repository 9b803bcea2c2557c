"""Steering plans built from statistics: one fitted map per (step, site)."""

import pytest
import torch

from steercore import ActivationStats, ConfigError, ShapeMismatchError
from steercore.core.plan import build_plan


def stats(kind, steps, seed, dims={"down.0": 4, "up.0": 6}):
    st = ActivationStats(kind, "all" if kind == "neutral" else "average")
    g = torch.Generator().manual_seed(seed)
    for step in steps:
        for site, D in dims.items():
            st.add(step, site, torch.randn(8, 5, D, generator=g) + seed)
    return st


def test_single_step_neutral_serves_every_step_of_per_step_concept_means():
    neutral = stats("neutral", [0], 0)
    src, tgt = stats("concept", [0, 1, 2], 1), stats("concept", [0, 1, 2], 2)
    plan = build_plan("midsteer", src, tgt, neutral)
    assert plan.steps == [0, 1, 2] and plan.sites == ["down.0", "up.0"]
    m = plan.map_for(2, "up.0")
    s, t = src.mean(2, "up.0"), tgt.mean(2, "up.0")
    torch.testing.assert_close(m(s), t)  # fitted with step-2 concept means and step-0 μ, Σ
    assert plan.map_for(1, "mid.0") is None
    with pytest.raises(ConfigError, match="covers steps 0..2 but generation reached step 3"):
        plan.map_for(3, "up.0")


def test_one_step_plan_serves_all_steps_and_site_filter():
    plan = build_plan("casteer", stats("concept", [0], 1), stats("concept", [0], 2), sites=["up.0"])
    assert plan.sites == ["up.0"] and plan.map_for(49, "up.0") is plan.map_for(0, "up.0")


def test_erasure_targets_mu_and_errors_are_one_line():
    neutral = stats("neutral", [0], 0)
    src = stats("concept", [0], 1)
    plan = build_plan("leace", src, None, neutral)
    torch.testing.assert_close(plan.map_for(0, "down.0")(src.mean(0, "down.0")), neutral.mean(0, "down.0"))
    with pytest.raises(ConfigError, match="leace needs neutral statistics"):
        build_plan("leace", src)
    with pytest.raises(ShapeMismatchError, match="site 'down.0' is \\[4\\] in the concept means but \\[5\\]"):
        build_plan("midsteer", src, None, stats("neutral", [0], 0, {"down.0": 5, "up.0": 6}))
    with pytest.raises(ConfigError, match="no site to steer"):
        build_plan("casteer", src, sites=["mid.0"])


def test_plan_is_built_one_covariance_at_a_time_and_keeps_none(monkeypatch):
    import gc
    import weakref

    neutral = stats("neutral", [0, 1, 2], 0)
    src = stats("concept", [0, 1, 2], 1)
    alive, asked = [], []
    real_cov = ActivationStats.cov

    def tracked_cov(self, step, site):
        gc.collect()
        asked.append((step, site, sum(r() is not None for r in alive)))
        out = real_cov(self, step, site)
        alive.append(weakref.ref(out))
        return out

    monkeypatch.setattr(ActivationStats, "cov", tracked_cov)
    plan = build_plan("leace", src, None, neutral, device="cpu")
    gc.collect()
    assert [(st, si) for st, si, _ in asked] == sorted(src.moments)  # in step order
    assert all(n == 0 for *_, n in asked)  # no earlier covariance is alive when the next one is formed
    assert all(r() is None for r in alive)  # the plan holds no [D, D] matrix
    reference = build_plan("leace", src, None, stats("neutral", [0, 1, 2], 0))
    for key, m in plan.maps.items():
        assert m.u.device.type == "cpu"
        torch.testing.assert_close(m.u, reference.maps[key].u)
        torch.testing.assert_close(m.v, reference.maps[key].v)


def test_diagnostics_report_the_fitted_sigma_the_edit_and_the_neutral_move():
    from steercore.core.linalg import Regularization
    from steercore.core.plan import diagnose_plan
    from steercore.core.stats import RowSample

    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([3.0, 1.0, 0.3, 0.1, 0.03, 0.01])  # a known spectrum: condition number ~ 9e4
    neutral, held_out = ActivationStats("neutral", "all"), RowSample("all", limit=300)
    for _ in range(4):
        neutral.add(0, "up.0", torch.randn(8, 50, 6, generator=g) * scale + 1)
    held_out.add(0, "up.0", torch.randn(1, 400, 6, generator=g) * scale + 1)
    assert held_out.rows(0, "up.0").shape == (300, 6)  # the limit holds
    src, tgt = ActivationStats("concept"), ActivationStats("concept")
    src.add(0, "up.0", torch.randn(4, 3, 6, generator=g) * scale + 1 + torch.tensor([0.0, 0, 0, 0, 0, 0.05]))
    tgt.add(0, "up.0", torch.randn(4, 3, 6, generator=g) * scale + 1 + torch.tensor([0.0, 0, 0, 0, 0, -0.05]))
    for reg in [Regularization(), Regularization("ridge", 1.0)]:
        plan = build_plan("midsteer", src, tgt, neutral, sites=["up.0"], regularization=reg)
        (d,) = diagnose_plan(plan, neutral, held_out, regularization=reg)
        lam = torch.linalg.eigvalsh(neutral.cov(0, "up.0"))
        lam = reg.apply(lam)
        assert d.samples == 1600 and d.rows == 300 and d.dim == 6
        assert d.condition_number == pytest.approx(float(lam[-1] / lam[0]), rel=1e-6)
        assert 1 < d.effective_rank < 6
        m = plan.map_for(0, "up.0")
        assert d.u_norm == pytest.approx(float(m.u.norm()))
        x = held_out.rows(0, "up.0").double()
        r = (m(x) - x).norm(dim=-1) / x.norm(dim=-1)
        assert d.move_mean == pytest.approx(float(r.mean())) and d.move_p95 == pytest.approx(float(r.quantile(0.95)))
        if reg.kind == "none":
            unregularized = d
    assert d.condition_number < unregularized.condition_number / 100  # the ridge's effect on Σ, as reported
    assert d.move_mean != pytest.approx(unregularized.move_mean)  # and the map it gives moves neutral rows otherwise
    casteer = build_plan("casteer", src, tgt, sites=["up.0"])
    (c,) = diagnose_plan(casteer, None, held_out)
    assert c.samples is None and c.condition_number is None and c.u_norm == pytest.approx(1.0)


def test_stacked_plan_reads_the_map_of_each_step():
    neutral = stats("neutral", [0], 0)
    plan = build_plan("leace", stats("concept", [0, 1, 2], 1), stats("concept", [0, 1, 2], 2), neutral, clip=True)
    x = torch.randn(3, 4, 6) * 4
    stacked = plan.stacked("up.0")
    assert stacked.edits[0].u.shape == (3, 6) and stacked.active is None
    for k in range(3):
        assert plan.step_index(k) == k
        assert torch.equal(stacked.edit(x, 2.0, torch.tensor(k)), plan.map_for(k, "up.0").edit(x, 2.0))
    with pytest.raises(ConfigError, match="covers steps 0..2 but generation reached step 3"):
        plan.step_index(3)
    single = build_plan("casteer", stats("concept", [0], 1), stats("concept", [0], 2))
    assert single.step_index(49) == 0 and single.stacked("up.0").edits[0].v.shape == (1, 6)
