"""Streaming activation statistics per site: counts, means and scatter matrices, mergeable across jobs.

A *site* is a named place in a model ("up.3", "layers.12.self_attn"); statistics are kept per (step, site),
where step is the diffusion step (0 for LLMs and 1-step models). Nothing per token is stored: each batch's
centred scatter is computed in float32 (the one O(N·D²) product, at full float32 speed on a GPU) and folded
into float64 accumulators with the exact Chan et al. update, so `merge()` of shards equals one pass over the
union of their data. `precision="float64"` does the batch product in float64 as well.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from steercore.core.errors import ConfigError, ShapeMismatchError

AGGREGATIONS = ("all", "average", "last")
PRECISIONS = ("float32", "float64")
"""Dtype of each batch's scatter product; the running mean and scatter are float64 either way."""


@contextmanager
def _full_float32_matmul():
    """float32 products at full precision: a caller's set_float32_matmul_precision("high"/"medium") would
    turn them into TF32/bf16 products, whose 1e-3 relative error the scatter cannot afford."""
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _batch_parts(X: Tensor, precision: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """(m, A, δ) of the rows X [N, D]: float64 mean m [D], the shifted product A = Σ(x − c)(x − c)ᵀ [D, D]
    (float32, or float64) and δ = m − c [D] (float64; None when c = m exactly, in the float64 product)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown statistics precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    m = X.sum(0, dtype=torch.float64) / X.shape[0]  # [D]
    if precision == "float64" or X.dtype == torch.float64:
        Xc = X.to(torch.float64) - m  # [N, D]
        return m, Xc.mT @ Xc, None
    c = m.to(torch.float32)  # [D]
    Xc = X.to(torch.float32) - c  # [N, D]
    with _full_float32_matmul():
        A = Xc.mT @ Xc  # [D, D] float32
    return m, A, m - c.to(torch.float64)  # δ [D] is below the float32 resolution of m


def batch_moments(X: Tensor, precision: str = "float32") -> tuple[Tensor, Tensor]:
    """Mean [D] (float64) and centred scatter Σᵢ(xᵢ − m)(xᵢ − m)ᵀ [D, D] (float64) of the rows X [N, D].

    float32: the rows are shifted by c = float32(m), the float64 mean rounded once, so the product sees
    deviations of the size of the spread, not of the mean (mean 1e3, spread 1e-2 loses nothing to the
    float32 mantissa); the rounding of c is then removed exactly: Σ(x − m)(x − m)ᵀ = Σ(x − c)(x − c)ᵀ − n·δδᵀ
    with δ = m − c, in float64. float64 rows keep the float64 product: rounding them would lose what they hold."""
    m, A, delta = _batch_parts(X, precision)
    S = A.to(torch.float64)
    return m, S if delta is None else S.addr_(delta, delta, alpha=-X.shape[0])


@dataclass
class Moments:
    """Count n, mean [D] and scatter S = Σᵢ(xᵢ − mean)(xᵢ − mean)ᵀ [D, D] of a stream of rows, in float64.

    `precision` is the dtype of each batch's scatter product (see `batch_moments`); both give the float64
    pass to ≤ 1e-6 relative (tests/core/test_stats.py), float32 at a fraction of the cost on a GPU."""

    dim: int
    track_cov: bool = True
    precision: str = "float32"
    n: int = 0
    mean: Tensor | None = None
    scatter: Tensor | None = None

    @torch.no_grad()
    def update(self, X: Tensor) -> None:
        """Fold rows X [N, D] in, as one batch (one matrix product, no per-row loop)."""
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ShapeMismatchError(f"statistics rows must be [N, {self.dim}], got {list(X.shape)}")
        if X.shape[0] == 0:
            return
        X, n_b = X.detach(), X.shape[0]
        if not self.track_cov:
            self._combine(n_b, X.sum(0, dtype=torch.float64) / n_b, None)
            return
        m_b, A, delta = _batch_parts(X, self.precision)
        if self.n == 0:
            self.n, self.mean = n_b, m_b
            self.scatter = A.to(torch.float64)
            if delta is not None:
                self.scatter.addr_(delta, delta, alpha=-n_b)
            return
        # S += A − n_b·δδᵀ + (n_a·n_b/n)·ΔΔᵀ (the Chan update of `_combine`, with the batch's shift correction):
        # two in-place passes over [D, D] — for small batches these passes, not the product, are the cost.
        n = self.n + n_b
        Delta = m_b - self.mean  # [D]
        self.scatter.add_(A)  # a float32 A is promoted exactly
        if delta is None:
            self.scatter.addr_(Delta, Delta, alpha=self.n * n_b / n)
        else:
            P = torch.stack([delta, Delta], 1)  # [D, 2]
            Q = torch.stack([delta * -n_b, Delta * (self.n * n_b / n)])  # [2, D]
            self.scatter.addmm_(P, Q)
        self.mean = self.mean + Delta * (n_b / n)
        self.n = n

    def _combine(self, n_b: int, m_b: Tensor, S_b: Tensor | None) -> None:
        """Fold another stream's (n_b, m_b, S_b) in (its tensors are copied, never adopted)."""
        if self.n == 0:
            self.n, self.mean, self.scatter = n_b, m_b.clone(), None if S_b is None else S_b.clone()
            return
        n = self.n + n_b
        delta = m_b.to(self.mean.device) - self.mean  # [D]
        if self.track_cov:
            # Chan et al.: S = S_a + S_b + δδᵀ·n_a·n_b/n, in place (the accumulator is never shared)
            self.scatter.add_(S_b.to(self.scatter.device)).addr_(delta, delta, alpha=self.n * n_b / n)
        self.mean = self.mean + delta * (n_b / n)
        self.n = n

    def merge(self, other: "Moments") -> "Moments":
        """A new Moments equal to one pass over both streams."""
        if other.dim != self.dim or other.track_cov != self.track_cov:
            raise ShapeMismatchError(f"cannot merge moments of D={self.dim} (cov={self.track_cov}) "
                                     f"with D={other.dim} (cov={other.track_cov})")
        out = Moments(self.dim, self.track_cov, self.precision)
        for part in (self, other):
            if part.n:
                out._combine(part.n, part.mean, part.scatter)
        return out

    @property
    def cov(self) -> Tensor:
        """Sample covariance S/(n − 1) [D, D]."""
        if not self.track_cov:
            raise ConfigError("these statistics were collected without covariance")
        if self.n < 2:
            raise ConfigError(f"a covariance needs at least 2 samples, got {self.n}")
        return 0.5 * (self.scatter + self.scatter.mT) / (self.n - 1)


def aggregate(x: Tensor, mode: str, mask: Tensor | None = None) -> Tensor:
    """Turn one call's activations x [B, T, D] (or [B, D]) into sample rows [N, D].

    - all: every (valid) token row is a sample, N = number of valid tokens;
    - average: the mean of each sequence's valid rows, N = B;
    - last: each sequence's last valid position, N = B (left or right padding, via `mask` [B, T]).
    """
    if mode not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation '{mode}'; choose one of {', '.join(AGGREGATIONS)}")
    if x.ndim == 2:
        x = x.unsqueeze(1)  # [B, 1, D]
    B, T, D = x.shape
    if mask is not None:
        if mask.shape != (B, T):
            raise ShapeMismatchError(f"attention mask is {list(mask.shape)}, activations are [{B}, {T}, D]")
        mask = mask.to(device=x.device, dtype=torch.bool)
    if mode == "all":
        return x[mask] if mask is not None else x.reshape(B * T, D)
    if mode == "average":
        if mask is None:
            return x.mean(1)
        w = mask.to(x.dtype).unsqueeze(-1)  # [B, T, 1]
        return (x * w).sum(1) / w.sum(1).clamp_min(1)
    # last: the highest position whose mask is set (works for left and right padding)
    if mask is None:
        return x[:, -1]
    pos = torch.arange(T, device=x.device).expand(B, T)
    idx = torch.where(mask, pos, -1).amax(1).clamp_min(0)  # [B]
    return x[torch.arange(B, device=x.device), idx]


@dataclass
class ActivationStats:
    """Moments per (step, site) plus provenance. kind 'neutral' tracks covariance, 'concept' only means.

    `meta` holds provenance written into files: model, aggregation, source (data set), concept, extra.
    `precision` is the dtype of each batch's scatter product ("float32", or "float64" for the slow exact pass).
    `buffer_mb`: a neutral site's rows are held back (copied, on their device) until they number D, so that
    calls of few rows (aggregation 'last': one row per sequence) share one [N, D] product and one float64
    update of the [D, D] scatter, instead of paying two passes over it per call; at most this many MB are held
    over all sites (0: fold every call in at once). Readers (`mean`, `cov`, `count`, `merge`, `save_stats`)
    fold pending rows in first; `flush()` does it explicitly. The result is one pass over the same rows.
    """

    kind: str = "neutral"
    aggregation: str = "all"
    meta: dict = field(default_factory=dict)
    moments: dict[tuple[int, str], Moments] = field(default_factory=dict)
    precision: str = "float32"
    buffer_mb: float = 256.0
    _pending: dict[tuple[int, str], list[Tensor]] = field(default_factory=dict, repr=False, compare=False)
    _pending_bytes: int = field(default=0, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in ("neutral", "concept"):
            raise ConfigError(f"statistics kind must be 'neutral' or 'concept', got '{self.kind}'")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"unknown aggregation '{self.aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown statistics precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if not self.buffer_mb >= 0:
            raise ConfigError(f"statistics buffer_mb must be ≥ 0, got {self.buffer_mb}")

    @property
    def track_cov(self) -> bool:
        return self.kind == "neutral"

    @torch.no_grad()
    def add(self, step: int, site: str, x: Tensor, mask: Tensor | None = None) -> None:
        """Aggregate one call's activations x [B, T, D] at (step, site) and fold them in (or hold them back
        until the site has D rows; see `buffer_mb`)."""
        rows = aggregate(x, self.aggregation, mask)
        key = (int(step), site)
        if key not in self.moments:
            self.moments[key] = Moments(rows.shape[-1], self.track_cov, self.precision)
        m = self.moments[key]
        if rows.shape[-1] != m.dim:
            raise ShapeMismatchError(f"statistics rows of {site} must be [N, {m.dim}], got {list(rows.shape)}")
        size = rows.numel() * rows.element_size()
        if not self.track_cov or rows.shape[0] >= m.dim or size > self.buffer_mb * 2**20:
            self._flush(key)
            m.update(rows)
            return
        if self._pending_bytes + size > self.buffer_mb * 2**20:
            self.flush()
        pending = self._pending.setdefault(key, [])
        pending.append(rows.detach().clone())  # a copy: the model may reuse the buffer it returned
        self._pending_bytes += size
        if sum(r.shape[0] for r in pending) >= m.dim:
            self._flush(key)

    def _flush(self, key: tuple[int, str]) -> None:
        pending = self._pending.pop(key, None)
        if pending:
            self._pending_bytes -= sum(r.numel() * r.element_size() for r in pending)
            self.moments[key].update(torch.cat(pending))  # one batch: [ΣN, D]

    def flush(self) -> None:
        """Fold every held-back row into its site's moments."""
        for key in list(self._pending):
            self._flush(key)

    def merge(self, other: "ActivationStats") -> "ActivationStats":
        """Exact union of two shards (same kind and aggregation); keys present in one shard only are kept."""
        if (other.kind, other.aggregation) != (self.kind, self.aggregation):
            raise ConfigError(f"cannot merge {self.kind}/{self.aggregation} statistics with "
                              f"{other.kind}/{other.aggregation}")
        self.flush()
        other.flush()
        # the merged Σ is as precise as its coarser part (this sets the round-off cut-off when it is whitened)
        precision = "float64" if self.precision == other.precision == "float64" else "float32"
        out = ActivationStats(self.kind, self.aggregation, dict(self.meta), precision=precision,
                              buffer_mb=self.buffer_mb)
        for key in sorted(set(self.moments) | set(other.moments)):
            a, b = self.moments.get(key), other.moments.get(key)
            if a is None or b is None:  # merging with an empty Moments makes an independent copy
                a = a if a is not None else b
                b = Moments(a.dim, a.track_cov, a.precision)
            out.moments[key] = a.merge(b)
        return out

    @property
    def sites(self) -> dict[str, int]:
        """Site name → activation dim D, in a stable order."""
        return {site: self.moments[(step, site)].dim for step, site in sorted(self.moments)}

    @property
    def steps(self) -> list[int]:
        return sorted({step for step, _ in self.moments})

    def step_for(self, step: int) -> int:
        """The stored step that serves generation step `step`: itself, or 0 when one set serves all steps."""
        steps = self.steps
        if steps == [0]:
            return 0
        if step not in steps:
            raise ConfigError(f"statistics hold steps {steps[0]}..{steps[-1]} but step {step} was asked for; "
                              "collect them with as many steps as you generate, or with a single step")
        return step

    def _get(self, step: int, site: str) -> Moments:
        self.flush()
        key = (self.step_for(step), site)
        if key not in self.moments:
            raise ShapeMismatchError(f"statistics have no site '{site}' (they hold {', '.join(self.sites)})")
        return self.moments[key]

    def mean(self, step: int, site: str) -> Tensor:
        return self._get(step, site).mean

    def cov(self, step: int, site: str) -> Tensor:
        return self._get(step, site).cov

    def count(self, step: int, site: str) -> int:
        return self._get(step, site).n


@dataclass
class RowSample:
    """Up to `limit` aggregated rows [N, D] per (step, site), kept as they are (float32, on the CPU): a small
    held-out batch of activations (e.g. for plan diagnostics). It has ActivationStats' `add`, so
    `collect_statistics` and the collection functions can feed it."""

    aggregation: str = "all"
    limit: int = 512
    moments: dict[tuple[int, str], list[Tensor]] = field(default_factory=dict)
    """(step, site) → the collected row blocks (named like ActivationStats' so collectors can prune steps)."""

    @torch.no_grad()
    def add(self, step: int, site: str, x: Tensor, mask: Tensor | None = None) -> None:
        blocks = self.moments.setdefault((int(step), site), [])
        room = self.limit - sum(b.shape[0] for b in blocks)
        if room > 0:
            blocks.append(aggregate(x, self.aggregation, mask)[:room].detach().float().cpu())

    def flush(self) -> None:
        """Nothing is held back here (the collection hooks call this at exit, as for ActivationStats)."""

    def rows(self, step: int, site: str) -> Tensor | None:
        """The rows [N, D] of (step, site) (step 0's when only step 0 was kept), or None."""
        blocks = self.moments.get((int(step), site)) or self.moments.get((0, site))
        return torch.cat(blocks) if blocks else None
