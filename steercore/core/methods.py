"""The steering maps: CASteer (add / remove), LEACE (erase and switch) and MidSteer.

Every map is an immutable object holding a few precomputed vectors. It is fitted once, in float64, from a
neutral mean μ and covariance Σ and concept means (source s, target t), and then applied to activations
x [..., D] in their own dtype. The notation follows the reference notes (§1):

    s̃ = Σ^{-1/2}(s − μ),   t̃ = Σ^{-1/2}(t − μ),   d̃ = s̃ − t̃

    LEACE     x' = x − β·c·u,   c = d̃ᵀΣ^{-1/2}(x − μ) / ‖d̃‖²,   u = Σ^{1/2} d̃
    MidSteer  x' = x − β·c·u,   c = s̃ᵀΣ^{-1/2}(x − μ) / ‖s̃‖²,   u = Σ^{1/2} d̃
    CASteer remove  x' = x − β·max(⟨x, v̂⟩, 0)·v̂,   v̂ = (s − t)/‖s − t‖
    CASteer add     x' = x + α·v̂  (or x + α·v·‖x‖)

All of the first three are one `RankOneEdit`: x' = x − β·c(x)·u with c(x) = vᵀ(x − μ). At β = 1 MidSteer
maps s exactly onto t and leaves μ fixed; LEACE maps s and t onto the same point; with t = μ (erasure)
the two coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence, Union

import torch
from torch import Tensor

from steercore.core.errors import ConfigError, ShapeMismatchError
from steercore.core.linalg import (NO_REGULARIZATION, RTOL, Regularization, check_finite, psd_sqrt_pair,
                                   regularized_covariance)

Strength = Union[float, Tensor]  # a scalar, or one strength per sample [B]


def check_strength(strength: Strength) -> None:
    """Reject non-numeric, negative or non-finite strengths with one line. Tensors are read once, here, not per call."""
    if isinstance(strength, Tensor):
        if strength.is_complex() or strength.dtype == torch.bool:
            raise ConfigError(f"steering strength must be a real number or a float tensor, got a {strength.dtype} tensor")
        values = strength.detach().flatten().tolist()
    elif isinstance(strength, (int, float)) and not isinstance(strength, bool):
        values = [float(strength)]
    else:
        raise ConfigError(f"steering strength must be a number >= 0 (a float or a tensor [B]), "
                          f"got {type(strength).__name__} {strength!r}")
    bad = [v for v in values if not (v >= 0 and math.isfinite(v))]
    if bad:
        raise ConfigError(f"steering strength must be a finite number >= 0, got {bad[0]}")


def _broadcast(strength: Strength, x: Tensor) -> Strength:
    """A per-sample strength [B] becomes [B, 1, ..., 1] so that it scales the rows of x [B, ..., D]."""
    if not isinstance(strength, Tensor):
        return strength
    if strength.ndim == 0:
        return strength.to(x.dtype)
    if strength.shape[0] != x.shape[0]:
        raise ShapeMismatchError(
            f"per-sample strength has {strength.shape[0]} entries but the activation batch has {x.shape[0]}"
        )
    return strength.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))


def _norm(x: Tensor) -> Tensor:
    """Per-token L2 norm [..., 1], accumulated in at least float32 (half-precision sums overflow)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=acc)


def _renormalize(x_new: Tensor, x_old: Tensor) -> Tensor:
    """Rescale each token of x_new to the norm it had in x_old."""
    new = _norm(x_new)
    scale = _norm(x_old) / new.clamp_min(torch.finfo(new.dtype).tiny)
    return x_new * scale.to(x_new.dtype)


class _Cast:
    """Per-(dtype, device) copies of a map's float64 factors, made on first use and then reused."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, owner, names: Sequence[str], like: Tensor) -> list[Tensor | None]:
        key = (like.dtype, like.device)
        if key not in self.cache:
            self.cache[key] = [
                None if getattr(owner, n) is None else getattr(owner, n).to(device=like.device, dtype=like.dtype)
                for n in names
            ]
        return self.cache[key]



def _dot(x: Tensor, v: Tensor) -> Tensor:
    """⟨x, v⟩ over the last dim, [..., D] → [...], each row reduced on its own: a `@` would go through a BLAS
    kernel chosen by the number of rows, so a sample's result would depend on the batch it is in (off by an
    ulp in float32 on some CPUs), and per-sample strengths in a batch must match unbatched runs bit for bit."""
    return (x * v).sum(-1)


def _rank_one(x: Tensor, strength: Strength, u: Tensor, v: Tensor, mu: Tensor | None, clip: bool,
              renormalize: bool) -> Tensor:
    """x − β·c·u, c = vᵀ(x − μ) (← max(c, 0) if clip), for x [..., D] and factors [D] in x's dtype."""
    c = _dot(x if mu is None else x - mu, v).unsqueeze(-1)  # [..., 1]
    if clip:
        c = c.clamp_min(0)
    out = x - (_broadcast(strength, x) * c) * u  # [..., D]
    return _renormalize(out, x) if renormalize else out


def _add(x: Tensor, strength: Strength, v: Tensor, renormalize: bool, scale_by_norm: bool) -> Tensor:
    """x + β·v (· ‖x‖ if scale_by_norm) for x [..., D] and v [D] in x's dtype."""
    step = _broadcast(strength, x) * v  # [..., D]
    if scale_by_norm:
        step = step * _norm(x).to(x.dtype)
    out = x + step
    return _renormalize(out, x) if renormalize else out


@dataclass(frozen=True, eq=False)
class RankOneEdit:
    """x' = x − β·c·u with c = vᵀ(x − μ), optionally c ← max(c, 0), optionally renormalized per token.

    LEACE, MidSteer and CASteer-remove are instances; see `fit_leace`, `fit_midsteer`, `fit_casteer_remove`.
    """

    u: Tensor
    """Edit direction [D] (float64): Σ^{1/2} d̃ for LEACE/MidSteer, v̂ for CASteer."""
    v: Tensor
    """Read-out covector [D] (float64): c = vᵀ(x − μ)."""
    mu: Tensor | None
    """Centre [D] (float64) that the edit leaves fixed; None means 0 (CASteer)."""
    clip: bool = False
    """Intermediate clipping: only positive scores c are removed."""
    renormalize: bool = False
    """Rescale each edited token to its original L2 norm."""
    method: str = "rank1"
    _cast: _Cast = field(default_factory=_Cast, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return self.u.shape[-1]

    def score(self, x: Tensor) -> Tensor:
        """c = vᵀ(x − μ) for x [..., D] → [...], in x's dtype."""
        u, v, mu = self._cast.get(self, ("u", "v", "mu"), x)
        return _dot(x if mu is None else x - mu, v)

    def __call__(self, x: Tensor, strength: Strength = 1.0) -> Tensor:
        check_strength(strength)
        return self.edit(x, strength)

    def edit(self, x: Tensor, strength: Strength) -> Tensor:
        """The hot path: no validation (strengths were checked when they were set)."""
        if x.shape[-1] != self.dim:
            raise ShapeMismatchError(f"{self.method}: activation has D={x.shape[-1]}, the map was fitted for D={self.dim}")
        u, v, mu = self._cast.get(self, ("u", "v", "mu"), x)
        return _rank_one(x, strength, u, v, mu, self.clip, self.renormalize)

    def fold_factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """(u, v, b) in float64 with x' = x − β·u·(vᵀx − b): the affine form used to fold into a linear layer."""
        b = (self.v @ self.mu) if self.mu is not None else torch.zeros((), dtype=self.v.dtype)
        return self.u, self.v, b


@dataclass(frozen=True, eq=False)
class AddVector:
    """CASteer add: x' = x + α·v̂ (renormalized to ‖x‖ by default), or x' = x + α·v·‖x‖ when `scale_by_norm`."""

    v: Tensor
    """Unit concept direction v̂ [D], or the raw difference v [D] when `scale_by_norm` (float64)."""
    renormalize: bool = True
    scale_by_norm: bool = False
    method: str = "casteer_add"
    clip: bool = False  # unused; present so every map answers the same questions
    _cast: _Cast = field(default_factory=_Cast, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return self.v.shape[-1]

    def __call__(self, x: Tensor, strength: Strength = 1.0) -> Tensor:
        check_strength(strength)
        return self.edit(x, strength)

    def edit(self, x: Tensor, strength: Strength) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ShapeMismatchError(f"{self.method}: activation has D={x.shape[-1]}, the map was fitted for D={self.dim}")
        (v,) = self._cast.get(self, ("v",), x)
        return _add(x, strength, v, self.renormalize, self.scale_by_norm)


@dataclass(frozen=True, eq=False)
class Sequential:
    """Several concepts applied in turn, each with the same strength."""

    maps: tuple

    @property
    def dim(self) -> int:
        return self.maps[0].dim

    def __call__(self, x: Tensor, strength: Strength = 1.0) -> Tensor:
        check_strength(strength)
        return self.edit(x, strength)

    def edit(self, x: Tensor, strength: Strength) -> Tensor:
        for m in self.maps:
            x = m.edit(x, strength)
        return x


SteeringMap = Union[RankOneEdit, AddVector, Sequential]


# ---------------------------------------------------------------------------------------------- stacked over steps


def _row(t: Tensor, step: Tensor) -> Tensor:
    """Row `step` (a 0-d long tensor) of t [S, ...] as a graph op: `t[step]` would read the step's value, which
    a compiled graph cannot do without a sync and a graph break (AOT autograd refuses it)."""
    return t[0] if t.shape[0] == 1 else t.index_select(0, step.reshape(1)).squeeze(0)


@dataclass(frozen=True, eq=False)
class StackedEdit:
    """One rank-one edit (or added vector) at every step 0..S−1 of a plan, its factors as rows [S, D]."""

    u: Tensor | None
    """Edit directions [S, D]; None for an added vector."""
    v: Tensor
    """Read-out covectors (rank one) or added vectors [S, D]."""
    mu: Tensor | None
    """Centres [S, D]; None means 0."""
    clip: bool
    renormalize: bool
    scale_by_norm: bool

    def edit(self, x: Tensor, strength: Strength, step: Tensor) -> Tensor:
        def row(t):  # [S, D] -> [D] of this step, in x's dtype: the cast the maps' own `_Cast` makes
            return None if t is None else _row(t, step).to(x.dtype)

        if self.u is None:
            return _add(x, strength, row(self.v), self.renormalize, self.scale_by_norm)
        return _rank_one(x, strength, row(self.u), row(self.v), row(self.mu), self.clip, self.renormalize)

    def to(self, device) -> "StackedEdit":
        moved = {k: getattr(self, k).to(device) for k in ("u", "v", "mu") if getattr(self, k) is not None}
        return replace(self, **moved)


@dataclass(frozen=True, eq=False)
class StackedMap:
    """One site's maps over the steps of a plan, in a form a compiled graph reads: `edit(x, β, step)` picks the
    rows of `step` (a 0-d long tensor) inside the graph, so that neither a new step nor a new strength (a tensor
    too) changes anything the graph was specialised on. Equals `plan.map_for(step, site).edit(x, β)`."""

    edits: tuple[StackedEdit, ...]
    """The concepts applied in turn (one, unless the maps are `Sequential`)."""
    active: Tensor | None
    """[S] bool: the steps at which the site has a map; None when it has one at every step."""

    def edit(self, x: Tensor, strength: Strength, step: Tensor) -> Tensor:
        out = x
        for e in self.edits:
            out = e.edit(out, strength, step)
        return out if self.active is None else torch.where(_row(self.active, step), out, x)

    def to(self, device) -> "StackedMap":
        active = None if self.active is None else self.active.to(device)
        return StackedMap(tuple(e.to(device) for e in self.edits), active)


def _components(m: SteeringMap, site: str) -> list:
    if isinstance(m, Sequential):
        return [c for part in m.maps for c in _components(part, site)]
    if not isinstance(m, (RankOneEdit, AddVector)):
        raise ConfigError(f"site '{site}': a {type(m).__name__} map cannot be stacked over steps for torch.compile; "
                          "steer the uncompiled model")
    return [m]


def _structure(c) -> tuple:
    """What a compiled graph specialises on: the kind of map and its options."""
    return type(c), c.clip, c.renormalize, getattr(c, "scale_by_norm", False), getattr(c, "mu", None) is None


def stack_maps(maps: Sequence[SteeringMap | None], site: str = "") -> StackedMap:
    """Stack the maps of steps 0..S−1 of one site (None: no map at that step; at least one is given). All must
    have the same structure (kind, options, number of concepts), as the maps of one plan do."""
    parts = [None if m is None else _components(m, site) for m in maps]
    first = next(p for p in parts if p is not None)
    shape = [_structure(c) for c in first]
    if any(p is not None and [_structure(c) for c in p] != shape for p in parts):
        raise ConfigError(f"site '{site}': its maps differ in kind or options between steps and cannot be stacked "
                          "for torch.compile; steer the uncompiled model")

    def rows(j: int, name: str) -> Tensor | None:  # [S, D], zeros at the steps without a map
        ref = getattr(first[j], name, None)  # an AddVector has no u and no μ
        if ref is None:
            return None
        return torch.stack([torch.zeros_like(ref) if p is None else getattr(p[j], name) for p in parts])

    edits = tuple(StackedEdit(rows(j, "u"), rows(j, "v"), rows(j, "mu"), c.clip, c.renormalize,
                              getattr(c, "scale_by_norm", False)) for j, c in enumerate(first))
    active = None if all(p is not None for p in parts) else torch.tensor([p is not None for p in parts])
    return StackedMap(edits, active)


# ---------------------------------------------------------------------------------------------- fitting


def _vec(name: str, t: Tensor, dim: int | None = None) -> Tensor:
    if isinstance(t, (str, bytes)) or t is None:
        raise ConfigError(f"{name} must be a float tensor [D], got {type(t).__name__}")
    t = torch.as_tensor(t).detach().to(torch.float64).reshape(-1).clone()  # a copy: inputs are never mutated
    if dim is not None and t.shape[0] != dim:
        raise ShapeMismatchError(f"{name} has D={t.shape[0]}, expected D={dim}")
    check_finite(name, t)
    return t


# One rule for every method: two means whose distance is at most RTOL of their size are the same point (an
# exact test lets round-off through and yields maps with ‖v‖ ~ 1e15), and a whitened direction must keep
# more than RTOL of its length inside the support of Σ.


def _check_distinct(method: str, a: Tensor, a_name: str, b: Tensor | None, b_name: str) -> None:
    """Refuse a == b (b None: a == 0) relative to their size, naming both."""
    if b is None:
        if not a.norm() > 0:
            raise ConfigError(f"{method}: the {a_name} is the zero vector, so the steering direction is zero; "
                              "nothing to steer along")
        return
    gap, scale = (a - b).norm(), torch.maximum(a.norm(), b.norm())
    if not gap > RTOL * scale:
        raise ConfigError(f"{method}: the {a_name} and the {b_name} are identical (distance {gap:.3g} at norm "
                          f"{scale:.3g}), so the steering direction is zero (the zero vector); use two different concepts")


def _check_support(method: str, d: Tensor, name: str, root: Tensor, inv_root: Tensor) -> None:
    """Refuse a direction d [D] that (numerically) lies in the null space of Σ: Σ cannot whiten it."""
    inside = (root @ (inv_root @ d)).norm()  # ‖P d‖, P = Σ^{1/2}Σ^{-1/2} the projector onto the support
    if not inside > RTOL * d.norm():
        raise ConfigError(f"{method}: the {name} direction lies outside the support of Σ (only {inside / d.norm():.1e} "
                          "of it is inside): the neutral samples never vary along it; collect neutral statistics "
                          "that cover the concepts, or use identity_cov: true")


def _unit(d: Tensor) -> Tensor:
    return d / d.norm()  # d ≠ 0: checked by _check_distinct


def _whitening(sigma: Tensor | None, dim: int) -> tuple[Tensor, Tensor]:
    """(Σ^{1/2}, Σ^{-1/2}) in float64, or (I, I) for the identity-covariance option (sigma=None)."""
    if sigma is None:
        eye = torch.eye(dim, dtype=torch.float64)
        return eye, eye
    if isinstance(sigma, (str, bytes)):
        raise ConfigError(f"covariance Σ must be a float tensor [D, D], got {type(sigma).__name__}")
    sigma = torch.as_tensor(sigma).detach().to(torch.float64)
    if sigma.shape != (dim, dim):
        raise ShapeMismatchError(f"covariance is {list(sigma.shape)}, expected [{dim}, {dim}]")
    return psd_sqrt_pair(sigma)


def _fit_affine(method, source, target, mu, sigma, *, clip, renormalize) -> RankOneEdit:
    s = _vec("source mean", source)
    D = s.shape[0]
    mu = _vec("neutral mean", mu, D)
    t = mu.clone() if target is None else _vec("target mean", target, D)  # erasure: the target is μ
    root, inv_root = _whitening(sigma, D)  # Σ^{1/2}, Σ^{-1/2}  [D, D]
    t_name = "neutral mean μ" if target is None else "target mean"
    _check_distinct(method, s, "source mean", t, t_name)
    _check_support(method, s - t, "source−target", root, inv_root)
    if method == "midsteer" and target is not None:  # c reads along s̃: s must differ from μ too
        _check_distinct(method, s, "source mean", mu, "neutral mean μ")
        _check_support(method, s - mu, "source−μ", root, inv_root)
    s_w = inv_root @ (s - mu)  # s̃ [D]
    t_w = inv_root @ (t - mu)  # t̃ [D]
    d_w = s_w - t_w  # d̃ [D]
    w = d_w if method == "leace" else s_w  # the whitened direction c reads along
    ww = w @ w
    u = root @ d_w  # u = Σ^{1/2} d̃  [D]
    v = inv_root @ w / ww  # vᵀ = wᵀΣ^{-1/2}/‖w‖²  [D]
    return RankOneEdit(u=u, v=v, mu=mu, clip=clip, renormalize=renormalize, method=method)


def fit_leace(source, mu, sigma, target=None, *, clip=False, renormalize=False) -> RankOneEdit:
    """LEACE erasure (target=None: t = μ) or LEACE-Switch (target given). sigma=None means Σ = I."""
    return _fit_affine("leace", source, target, mu, sigma, clip=clip, renormalize=renormalize)


def fit_midsteer(source, mu, sigma, target=None, *, clip=False, renormalize=False) -> RankOneEdit:
    """MidSteer: at β = 1 maps s onto t (onto μ when target=None) and fixes μ. sigma=None means Σ = I."""
    return _fit_affine("midsteer", source, target, mu, sigma, clip=clip, renormalize=renormalize)


def fit_casteer_remove(source, target=None, *, clip=True, renormalize=False) -> RankOneEdit:
    """CASteer remove along v̂ = unit(s − t) (erasure without target: v̂ = unit(s))."""
    s = _vec("source mean", source)
    t = None if target is None else _vec("target mean", target, s.shape[0])
    _check_distinct("casteer", s, "source mean", t, "target mean")
    v_hat = _unit(s if t is None else s - t)
    return RankOneEdit(u=v_hat, v=v_hat.clone(), mu=None, clip=clip, renormalize=renormalize, method="casteer")


def fit_casteer_add(positive, negative=None, *, renormalize=True, scale_by_norm=False) -> AddVector:
    """CASteer add towards `positive` (away from `negative`): v̂ = unit(pos − neg); raw v when `scale_by_norm`."""
    p = _vec("positive mean", positive)
    n = None if negative is None else _vec("negative mean", negative, p.shape[0])
    _check_distinct("casteer_add", p, "positive mean", n, "negative mean")
    d = p if n is None else p - n
    v = d if scale_by_norm else _unit(d)
    return AddVector(v=v, renormalize=renormalize, scale_by_norm=scale_by_norm)


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """A steering method, declared once: the experiment schema, plans, presets' checks, figures and the
    workflow all read it from `METHODS`. Register another with `register_method`."""

    name: str
    fit: Callable[..., SteeringMap]
    """fit(source, target, mu, sigma, *, clip, renormalize) → map; target None erases, sigma None means Σ = I."""
    label: str
    """Display name in figures and tables."""
    marker: str
    """matplotlib marker of its points."""
    colour: str
    """matplotlib edge colour of its points."""
    needs_neutral: bool = False
    """Reads the neutral mean μ and covariance Σ (so the cov stage must run)."""
    needs_target: bool = False
    """Only switches a concept; cannot erase one."""
    foldable: bool = False
    """Unclipped and not renormalized, its map is affine and folds into the output projection."""
    clip_default: bool = False
    """Intermediate clipping when the caller does not say; True also overrides an experiment's `clip: false`."""
    renormalize_default: bool = False
    """Renormalization to the token's norm when the caller does not say."""


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make `method` known by name (to fit_method, build_plan, the experiment loader and the figures)."""
    if not method.name.isidentifier():
        raise ConfigError(f"method name '{method.name}' must be a Python-style identifier (letters, digits, _)")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown steering method '{name}'; choose one of {', '.join(METHODS)}") from None


register_method(Method(
    "casteer", lambda s, t, mu, sigma, *, clip, renormalize: fit_casteer_remove(s, t, clip=clip, renormalize=renormalize),
    label="CASteer", marker="o", colour="tab:red", foldable=True, clip_default=True))
register_method(Method(
    "casteer_add", lambda s, t, mu, sigma, *, clip, renormalize: fit_casteer_add(t, s, renormalize=renormalize),
    label="CASteer-add", marker="s", colour="tab:orange", needs_target=True, renormalize_default=True))
register_method(Method(
    "leace", lambda s, t, mu, sigma, *, clip, renormalize: fit_leace(s, mu, sigma, t, clip=clip, renormalize=renormalize),
    label="LEACE", marker="^", colour="tab:blue", needs_neutral=True, foldable=True))
register_method(Method(
    "midsteer", lambda s, t, mu, sigma, *, clip, renormalize: fit_midsteer(s, mu, sigma, t, clip=clip,
                                                                           renormalize=renormalize),
    label="MidSteer", marker="D", colour="tab:green", needs_neutral=True, foldable=True))


def fit_method(method: str, *, source, target=None, mu=None, sigma=None, identity_cov=False,
               clip: bool | None = None, renormalize: bool | None = None, precision: str = "float32",
               regularization: Regularization = NO_REGULARIZATION, n: int | None = None) -> SteeringMap:
    """Fit one map by name (a key of `METHODS`) from float tensors.

    casteer / leace / midsteer move the source towards the target (towards μ, i.e. erase, when target is
    None); casteer_add adds unit(target − source). clip=None and renormalize=None take each method's
    default: clipping on for casteer (max(⟨x, v̂⟩, 0)), off for the others; renormalization on for casteer_add only.
    Methods that read Σ are fitted with `regularized_covariance(sigma, precision=, regularization=, n=)`:
    `precision` is the one the statistics were accumulated in (it sets the round-off cut-off: float32 for the
    cov stage), n their sample count (for OAS).
    """
    spec = get_method(method)
    if spec.needs_target and target is None:
        raise ConfigError(f"{method} needs a target concept to add")
    if spec.needs_neutral:
        if mu is None:
            raise ConfigError(f"{method} needs the neutral mean μ (run the cov stage first)")
        sigma = None if identity_cov else sigma
        if sigma is None and not identity_cov:
            raise ConfigError(f"{method} needs the neutral covariance Σ, or identity_cov: true")
        if sigma is not None:
            if isinstance(sigma, (str, bytes)):
                raise ConfigError(f"covariance Σ must be a float tensor [D, D], got {type(sigma).__name__}")
            sigma = torch.as_tensor(sigma).detach().to(torch.float64)
            if sigma.ndim == 2 and sigma.shape[0] == sigma.shape[1]:  # a mis-shaped Σ is named by the fitter
                sigma = regularized_covariance(sigma, precision=precision, regularization=regularization, n=n)
    clip = spec.clip_default if clip is None else clip
    renormalize = spec.renormalize_default if renormalize is None else renormalize
    return spec.fit(source, target, mu, sigma, clip=bool(clip), renormalize=bool(renormalize))
