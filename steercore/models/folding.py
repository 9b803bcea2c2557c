"""Zero-overhead steering: fold a single-step rank-one map into the linear layer that produces each site.

For y = W h + b and x' = x − β·u·(vᵀx − b_s) (`RankOneEdit.fold_factors`):

    W' = (I − β u vᵀ) W = W − β u (vᵀW),     b' = (I − β u vᵀ) b + β u b_s

computed in float64 and stored in the layer's dtype. A layer without a bias keeps none unless the map has an
offset: b_s = vᵀμ ≠ 0 (LEACE/MidSteer with a non-zero neutral mean); CASteer (μ = 0) and zero_mu plans fold
into the weight alone. The added bias costs one [D] add per token (addmm instead of mm). The original
parameter objects are kept and put back by `unfold`, so unfolding is bit-exact. Folding edits every row the
layer computes, so it cannot steer only the conditional half of a CFG batch nor skip padding: on a pipeline a
denoiser pre-hook refuses to run under CFG unless `allow_cfg=True`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from steercore.core.errors import ConfigError, SteerError
from steercore.models.hooks import CallState, Patches, find_plan_sites, track_pipeline
from steercore.core.methods import METHODS, RankOneEdit, check_strength
from steercore.core.plan import SteeringPlan
from steercore.models.sites import is_pipeline, resolve_sites


@dataclass
class Folded:
    """What `fold` changed: the linear layers with their original weight and bias objects."""

    layers: list[tuple[nn.Linear, nn.Parameter, nn.Parameter | None]] = field(default_factory=list)
    patches: Patches = field(default_factory=Patches)
    active: bool = True


def _foldable(plan: SteeringPlan) -> None:
    if plan.method in METHODS and not METHODS[plan.method].foldable:
        raise ConfigError(f"{plan.method} maps cannot be folded into a linear layer; use attach_steering")
    if plan.steps != [0]:
        raise ConfigError(f"only a single-step plan can be folded, this one has steps {plan.steps[0]}..{plan.steps[-1]}; "
                          "use attach_steering")
    for (_, site), m in plan.maps.items():
        if not isinstance(m, RankOneEdit) or m.clip or m.renormalize:
            what = type(m).__name__ if not isinstance(m, RankOneEdit) else ("clipping" if m.clip else "renormalization")
            raise ConfigError(f"site '{site}': a map with {what} is not affine and cannot be folded; "
                              "fit it with clip=False, renormalize=False or use attach_steering")


@torch.no_grad()
def _fold_linear(layer: nn.Linear, m: RankOneEdit, strength: float) -> tuple[nn.Parameter, nn.Parameter | None]:
    u, v, b_s = m.fold_factors()  # float64 [D], [D], []
    W0, b0 = layer.weight, layer.bias
    W = W0.detach().to(torch.float64)  # [D, D_in]
    dev = W.device
    u, v, b_s = u.to(dev), v.to(dev), b_s.to(dev)
    W_new = W - strength * torch.outer(u, v @ W)  # (I − β u vᵀ) W, without forming the D×D matrix
    layer.weight = nn.Parameter(W_new.to(W0.dtype), requires_grad=W0.requires_grad)
    if b0 is None and not bool(b_s != 0):
        return W0, b0  # no offset: (I − β u vᵀ)·0 = 0, the layer stays bias-free
    b = b0.detach().to(torch.float64) if b0 is not None else torch.zeros(W.shape[0], dtype=torch.float64, device=dev)
    b_new = b - strength * u * (v @ b - b_s)  # (I − β u vᵀ) b + β u b_s
    layer.bias = nn.Parameter(b_new.to(W0.dtype), requires_grad=W0.requires_grad)
    return W0, b0


def fold(target, plan: SteeringPlan, strength: float = 1.0, *, llm_site: str = "self_attn",
         allow_cfg: bool = False) -> Folded:
    """Fold `plan` at `strength` into the linear layers of `target`; undo with `unfold(returned)`."""
    check_strength(strength)
    if isinstance(strength, torch.Tensor):
        if strength.numel() != 1:
            raise ConfigError("folding takes one strength for the whole batch; "
                              "use attach_steering for per-sample strengths")
        strength = float(strength)
    _foldable(plan)
    find_plan_sites(target, plan, llm_site)  # same site/width checks as attach_steering
    sites = {s.name: s for s in resolve_sites(target, llm_site)}
    not_foldable = [name for name in plan.sites if sites[name].linear is None]
    if not_foldable:
        raise ConfigError(f"site(s) {', '.join(not_foldable)} have no linear output layer to fold into "
                          "(FLUX single blocks, LLM residual); use attach_steering")
    if any(getattr(sites[n].linear, "_steer_folded", False) for n in plan.sites):
        raise SteerError("this model already has a folded steering plan; unfold it first")
    out = Folded()
    if is_pipeline(target) and not allow_cfg:
        state = CallState()

        def refuse_cfg():
            if state.cfg:
                raise SteerError("a folded steering plan would also steer the unconditional half of classifier-free "
                                 "guidance; generate with guidance_scale <= 1, use attach_steering, "
                                 "or fold with allow_cfg=True")
        track_pipeline(target, state, out.patches, on_call=refuse_cfg)
    for name in plan.sites:
        layer = sites[name].linear
        W0, b0 = _fold_linear(layer, plan.map_for(0, name), strength)
        layer._steer_folded = True
        out.layers.append((layer, W0, b0))
    return out


@torch.no_grad()
def unfold(folded: Folded) -> None:
    """Put the original weight and bias objects back (bit-exact) and remove the CFG guard."""
    if not folded.active:
        return
    for layer, W0, b0 in reversed(folded.layers):
        layer.weight = W0
        if b0 is None:
            layer.bias = None  # registered as None again, as nn.Linear(bias=False) has it
        else:
            layer.bias = b0
        del layer._steer_folded
    folded.patches.remove()
    folded.active = False


@contextmanager
def folded(target, plan: SteeringPlan, strength: float = 1.0, *, llm_site: str = "self_attn", allow_cfg: bool = False):
    """`fold` on entry, `unfold` on exit."""
    handle = fold(target, plan, strength, llm_site=llm_site, allow_cfg=allow_cfg)
    try:
        yield handle
    finally:
        unfold(handle)

