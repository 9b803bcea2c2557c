"""A steering plan: the fitted map for every (step, site) of a model, built from statistics files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from steercore.core.errors import ConfigError, ShapeMismatchError
from steercore.core.linalg import NO_REGULARIZATION, Regularization, cutoff, regularized_covariance
from steercore.core.methods import SteeringMap, StackedMap, fit_method, get_method, stack_maps
from steercore.core.stats import ActivationStats, RowSample


@dataclass(frozen=True)
class SteeringPlan:
    """Maps keyed by (step, site). A plan whose only step is 0 serves every generation step (statistics
    fitted on a 1-step model, or an LLM); otherwise generation step k uses the maps of step k."""

    maps: dict[tuple[int, str], SteeringMap]
    method: str = ""

    @property
    def sites(self) -> list[str]:
        return sorted({site for _, site in self.maps})

    @property
    def steps(self) -> list[int]:
        return sorted({step for step, _ in self.maps})

    def step_index(self, step: int) -> int:
        """The plan step that serves generation step `step` (0 for a single-step plan); past the plan's last
        step is a ConfigError."""
        steps = self.steps
        if steps == [0]:
            return 0
        if step > steps[-1]:
            raise ConfigError(f"the steering plan covers steps 0..{steps[-1]} but generation reached step "
                              f"{step}; fit vectors with as many steps as you generate, or with one step")
        return step

    def map_for(self, step: int, site: str) -> SteeringMap | None:
        """The map to apply at generation step `step` and `site`, or None if the site is not steered."""
        return self.maps.get((self.step_index(step), site))

    def stacked(self, site: str) -> StackedMap:
        """The maps of `site` at every step 0..S−1 that `step_index` can return, stacked for a compiled graph."""
        return stack_maps([self.maps.get((k, site)) for k in range(self.steps[-1] + 1)], site)


def _on_cpu(m: SteeringMap) -> SteeringMap:
    """The map with its vectors on the CPU (a plan holds a few [D] vectors per map; maps cast them on use)."""
    if dataclasses.is_dataclass(m) and hasattr(m, "maps"):
        return dataclasses.replace(m, maps=tuple(_on_cpu(x) for x in m.maps))
    moved = {f.name: getattr(m, f.name).cpu() for f in dataclasses.fields(m)
             if isinstance(getattr(m, f.name), torch.Tensor)}
    return dataclasses.replace(m, **moved)


def build_plan(method: str, source: ActivationStats, target: ActivationStats | None = None,
               neutral: ActivationStats | None = None, *, sites: list[str] | None = None,
               identity_cov: bool = False, clip: bool | None = None, renormalize: bool | None = None,
               zero_mu: bool = False, regularization: Regularization = NO_REGULARIZATION,
               device: str | torch.device | None = None) -> SteeringPlan:
    """Fit `method` at every (step, site) of the source concept means.

    target=None erases the source (towards μ). Neutral statistics (μ, Σ) are needed by leace/midsteer;
    neutral statistics of a single step serve every step of the concept means. zero_mu sets μ = 0.
    `regularization` regularises each Σ (`steercore.core.linalg.Regularization`, with the site's sample count
    for OAS); the round-off cut-off follows the precision the neutral statistics were accumulated in.

    Maps are fitted one (step, site) at a time, in step order: one covariance [D, D] (and its `eigh`) is on
    `device` at once (a GPU makes the eigendecompositions fast; None fits where the statistics are), and
    the plan keeps only the fitted [D] vectors, on the CPU. Per-step statistics of a 50-step SD 1.5 run are
    ~5 GB in float64; the plan built from them is a few MB.
    """
    if source.kind != "concept" or (target is not None and target.kind != "concept"):
        raise ConfigError("source and target must be concept-mean statistics (kind 'concept')")
    needs_neutral = get_method(method).needs_neutral
    maps = {}
    for (step, site), m in sorted(source.moments.items()):
        if sites is not None and site not in sites:
            continue
        s = m.mean
        t = target.mean(step, site) if target is not None else None
        mu = sigma = n = None
        if needs_neutral:
            if neutral is None:
                raise ConfigError(f"{method} needs neutral statistics (the cov stage)")
            if neutral.sites.get(site) != s.shape[0]:
                raise ShapeMismatchError(f"site '{site}' is [{s.shape[0]}] in the concept means but "
                                         f"[{neutral.sites.get(site)}] in the neutral statistics")
            mu = neutral.mean(step, site) * (0 if zero_mu else 1)
            sigma = None if identity_cov else neutral.cov(step, site)
            n = neutral.count(step, site)
            if target is None:
                t = None  # erasure: the target is μ itself (after zero_mu, if set)
        if device is not None and sigma is not None:  # only a covariance is worth moving
            s, t, mu, sigma = (None if x is None else x.to(device) for x in (s, t, mu, sigma))
        fitted = fit_method(method, source=s, target=t, mu=mu, sigma=sigma, identity_cov=identity_cov,
                            clip=clip, renormalize=renormalize, regularization=regularization, n=n,
                            precision=neutral.precision if neutral is not None else "float32")
        del sigma  # this (step, site)'s covariance is freed before the next one is formed
        maps[(step, site)] = _on_cpu(fitted) if device is not None else fitted
    if not maps:
        raise ConfigError(f"no site to steer: the concept means hold {', '.join(source.sites) or 'nothing'}"
                          + (f", the plan asked for {', '.join(sites)}" if sites else ""))
    return SteeringPlan(maps, method)


# ---------------------------------------------------------------------------------------------- diagnostics


@dataclass(frozen=True)
class MapDiagnostics:
    """What a fitted map will do, known before any generation (one per (step, site))."""

    step: int
    site: str
    dim: int
    samples: int | None
    """Neutral rows behind Σ (None: the method reads no Σ)."""
    condition_number: float | None
    """λ_max/λ_min of the Σ the map was fitted with, over its support."""
    effective_rank: float | None
    """exp(−Σ pᵢ log pᵢ), pᵢ = λᵢ/Σλ (Roy & Vetterli): between 1 and D."""
    u_norm: float
    """‖u‖ of the edit x' = x − β·c·u (‖v‖ for an added vector)."""
    move_mean: float
    """Mean ‖Δx‖/‖x‖ at β = 1 over the held-out neutral rows (NaN without rows)."""
    move_p95: float
    """Its 95th percentile."""
    rows: int


def spectrum_summary(sigma: torch.Tensor) -> tuple[float, float]:
    """(condition number over the support, effective rank) of a covariance [D, D]."""
    lam = torch.linalg.eigvalsh(0.5 * (sigma + sigma.mT)).clamp_min(0)  # [D]
    support = lam[lam > cutoff(lam[-1], lam.shape[-1], "float64")]
    p = support / support.sum()
    return float(support[-1] / support[0]), float(torch.exp(-(p * p.log()).sum()))


def neutral_move(m: SteeringMap, rows: torch.Tensor) -> tuple[float, float]:
    """(mean, 95th percentile) of ‖m(x) − x‖/‖x‖ at β = 1 over rows [N, D]."""
    x = rows.to(torch.float64)
    r = (m.edit(x, 1.0) - x).norm(dim=-1) / x.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)  # [N]
    return float(r.mean()), float(torch.quantile(r, 0.95))


def diagnose_plan(plan: SteeringPlan, neutral: ActivationStats | None = None, held_out: RowSample | None = None, *,
                  identity_cov: bool = False, regularization: Regularization = NO_REGULARIZATION) -> list[MapDiagnostics]:
    """Diagnostics of every map of `plan` (fitted by `build_plan` from `neutral` with the same options):
    the Σ it whitens with (recomputed from `neutral` with `regularization`), ‖u‖, and how far β = 1 moves the
    held-out neutral rows."""
    needs_sigma = get_method(plan.method).needs_neutral and not identity_cov and neutral is not None
    out = []
    for (step, site), m in sorted(plan.maps.items()):
        samples = cond = erank = None
        if needs_sigma:
            samples = neutral.count(step, site)
            sigma = regularized_covariance(neutral.cov(step, site), precision=neutral.precision,
                                           regularization=regularization, n=samples)
            cond, erank = spectrum_summary(sigma)
        u = getattr(m, "u", None)
        u = m.v if u is None else u
        rows = held_out.rows(step, site) if held_out is not None else None
        move = neutral_move(m, rows) if rows is not None and rows.shape[0] else (float("nan"), float("nan"))
        out.append(MapDiagnostics(step, site, m.dim, samples, cond, erank, float(u.norm()), *move,
                                  0 if rows is None else rows.shape[0]))
    return out
