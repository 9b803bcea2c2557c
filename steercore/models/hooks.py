"""Attach a steering plan (write) or a statistics collector (read) to a real pipeline or causal LM.

Both are context managers built on removable torch forward hooks on the site modules (`sites.py`), so
attention slicing, fused QKV and processor swaps cannot bypass them: the hook wraps the attention module,
not its processor. What they share is the *call state* that a site hook needs:

- diffusion: the step index (the number of `scheduler.step` calls since the pipeline's `set_timesteps`,
  i.e. the pipeline's loop index, reset per generation), whether this denoiser call runs batched CFG
  (the pipeline's `do_classifier_free_guidance`, else the flag its `encode_prompt` received) — then only the
  second, conditional half of the batch is touched unless steering asks for both halves (`cfg_halves`) — and
  the text length of the call (FLUX single blocks);
- LLMs: the attention mask of the current positions (padding is neither steered nor counted) and whether
  the call decodes new tokens (a non-empty KV cache; for `llm_positions`).

A model with a compiled module (torch.compile in place, wrapped, or of any submodule) is steered through
patches of the site modules' `forward` instead: dynamo does not guard on forward hooks (a compiled graph
silently skips those added later) but does guard on that instance attribute, so the first steered call
compiles once and exit brings the plain graph back. The plan is applied stacked over steps
(`SteeringPlan.stacked`) at a 0-d step tensor that is filled in place before each denoiser call, and the
strength is a tensor too, so no diffusion step and no strength value recompiles; the call-state pre-hooks
run outside dynamo. What stays Python (CFG or not, FLUX's negative-prompt call and text length, an LLM mask
or none, prefill or decoding) is specialised on: it changes per generation or with the shapes. Statistics
(Python side effects on every call) are collected on uncompiled models only.

On exit every hook and method patch is removed; the model is exactly as before.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from steercore.core.errors import ConfigError, ShapeMismatchError, SteerError
from steercore.core.methods import Strength, check_strength
from steercore.core.plan import SteeringPlan
from steercore.models.sites import (Site, denoiser_of, is_pipeline, language_model_of, resolve_sites,
                                    unwrap_compiled)
from steercore.core.stats import ActivationStats

# A site callback gets (site name, activations [B, T, D] of the part to read/steer, row mask [B, T] or None)
# and returns the replacement activations (steering) or None (reading).
SiteFn = Callable[[str, Tensor, "Tensor | None"], "Tensor | None"]


# ------------------------------------------------------------------------------------------ call state


@dataclass
class CallState:
    """What the site hooks need to know about the current forward call (see the module docstring)."""

    step: int = 0
    cfg: bool = False
    skip: bool = False  # a second denoiser call in one scheduler step without batched CFG: FLUX's true-CFG
    # negative prompt (FluxPipeline calls the transformer once with the prompt, then once with the negative)
    text_len: int = 0
    mask: Tensor | None = None  # LLM: [B, T] bool of the current positions, None when all are valid
    decoding: bool = False  # LLM: the call extends a non-empty KV cache
    calls_in_step: int = 0
    encode_cfg: bool = False  # the CFG flag the pipeline last passed to encode_prompt (pipelines without the property)

    def reset(self) -> None:
        self.step, self.calls_in_step, self.skip = 0, 0, False


class Patches:
    """Instance-level method patches and torch hook handles, all undone by `remove()`.

    Patches stack: a second attachment (say collect_statistics inside attach_steering) wraps the first one's
    wrapper, and nested exits restore each layer in turn."""

    def __init__(self):
        self.handles: list = []
        self.patched: list[tuple[object, str, object]] = []

    def patch(self, obj, name: str, wrapper_of: Callable[[Callable], Callable]) -> None:
        previous = vars(obj).get(name, _MISSING)
        setattr(obj, name, wrapper_of(getattr(obj, name)))
        self.patched.append((obj, name, previous))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        for obj, name, previous in reversed(self.patched):
            if previous is _MISSING:
                vars(obj).pop(name, None)
            else:
                setattr(obj, name, previous)
        self.handles.clear()
        self.patched.clear()


_MISSING = object()


# diffusers hooks that reuse or skip computations (caches, layer skipping) or rewrite attention (SEG)
_SKIPPING = re.compile(r"cache|fbc|skip|broadcast|smoothed_energy|taylorseer", re.IGNORECASE)


def _check_no_skipping_hooks(module: nn.Module) -> None:
    """A cached/skipped block would silently go unsteered (or reuse a stale steered output): refuse."""
    for name, m in module.named_modules():
        registry = getattr(m, "_diffusers_hook", None)
        for key, hook in (getattr(registry, "hooks", None) or {}).items():
            if _SKIPPING.search(key) or _SKIPPING.search(type(hook).__name__):
                raise SteerError(f"{type(hook).__name__} on {type(module).__name__}.{name or '(root)'} skips "
                                 "computations that steering must see; disable it first (e.g. disable_cache())")


def _cfg_flag_from_encode_prompt(pipe, state: CallState, patches: Patches) -> bool:
    """Pipelines without a `do_classifier_free_guidance` property (PixArt) pass the flag to encode_prompt."""
    fn = getattr(pipe, "encode_prompt", None)
    if fn is None or "do_classifier_free_guidance" not in inspect.signature(fn).parameters:
        return False
    sig = inspect.signature(fn)

    def wrapper_of(orig):
        @functools.wraps(orig)
        def encode_prompt(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            state.encode_cfg = bool(bound.arguments["do_classifier_free_guidance"])
            return orig(*args, **kwargs)
        return encode_prompt

    patches.patch(pipe, "encode_prompt", wrapper_of)
    return True


def track_pipeline(pipe, state: CallState, patches: Patches, *, on_call: Callable[[], None] | None = None) -> None:
    """Keep `state` current for every denoiser call of `pipe` (steps, CFG, text length)."""
    den = denoiser_of(pipe)
    _check_no_skipping_hooks(den)
    scheduler = pipe.scheduler
    has_property = isinstance(getattr(type(pipe), "do_classifier_free_guidance", None), property)
    if not has_property:
        _cfg_flag_from_encode_prompt(pipe, state, patches)

    def set_timesteps_of(orig):
        @functools.wraps(orig)  # pipelines inspect set_timesteps' signature (retrieve_timesteps)
        def set_timesteps(*args, **kwargs):
            state.reset()  # a new generation
            return orig(*args, **kwargs)
        return set_timesteps

    def step_of(orig):
        @functools.wraps(orig)
        def step(*args, **kwargs):
            out = orig(*args, **kwargs)
            state.step += 1
            state.calls_in_step = 0
            return out
        return step

    patches.patch(scheduler, "set_timesteps", set_timesteps_of)
    patches.patch(scheduler, "step", step_of)

    def pre_hook(module, args, kwargs):
        if pipe.scheduler is not scheduler:
            raise SteerError("the pipeline's scheduler was replaced inside attach_steering/collect_statistics; "
                             "set the scheduler before entering the context")
        state.cfg = bool(pipe.do_classifier_free_guidance) if has_property else state.encode_cfg
        # Without batched CFG, a second denoiser call in the same step is the negative prompt (FLUX true CFG)
        state.skip = not state.cfg and state.calls_in_step > 0
        state.calls_in_step += 1
        text = kwargs.get("encoder_hidden_states")
        state.text_len = text.shape[1] if isinstance(text, Tensor) and text.ndim == 3 else 0
        if on_call is not None:
            on_call()

    _register_pre_hook(den, pre_hook, patches)


def track_language_model(model: nn.Module, state: CallState, patches: Patches) -> None:
    """Keep the current-position mask and the decoding flag in `state` for every forward of `model`."""

    def pre_hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        T = ids.shape[1]
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if isinstance(mask, Tensor) and mask.ndim == 2:
            cur = mask[:, -T:].bool()  # [B, T]: the mask covers cached + current positions
            state.mask = None if bool(cur.all()) else cur
        else:
            state.mask = None
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        state.decoding = past > 0

    _register_pre_hook(model, pre_hook, patches)


def compiled_module(module: nn.Module) -> str | None:
    """The dotted name ('' for the root) of the first module in `module`'s tree that torch.compile compiled: in
    place (`m.compile()`), wrapped (`torch.compile(m)`, an OptimizedModule) or through its forward
    (`m.forward = torch.compile(m.forward)`); None if none is."""
    for name, m in module.named_modules():
        forward = vars(m).get("forward")
        if (getattr(m, "_compiled_call_impl", None) is not None or hasattr(m, "_orig_mod")
                or getattr(forward, "_torchdynamo_orig_callable", None) is not None):
            return name
    return None


def _register_pre_hook(root: nn.Module, pre_hook, patches: Patches) -> None:
    """Run `pre_hook` before every call of `root`; on the module inside a torch.compile wrapper, whose hooks
    run on direct calls too (transformers' generate calls the model, not the wrapper). A compiled root runs its
    hooks outside the graph, but dynamo would compile the hook's own frame and specialise it on the call state
    it updates: a compiled model gets an eager hook (torch.compiler.disable)."""
    if compiled_module(root) is not None:
        pre_hook = torch.compiler.disable(pre_hook)
    root = unwrap_compiled(root)
    patches.handles.append(root.register_forward_pre_hook(pre_hook, with_kwargs=True))


# ------------------------------------------------------------------------------------------ site hooks


CFG_HALVES = ("conditional", "both")
"""Which halves of a CFG batch steering touches: the conditional one (default), or both as the steering-hogs
seed did (then a separate negative-prompt call, FLUX's true CFG, is steered too)."""


def _site_hook(site: Site, state: CallState, fn: SiteFn, diffusion: bool, cfg_halves: str = "conditional"):
    layout = site.layout
    both = cfg_halves == "both"

    def hook(module, args, output):
        if state.skip and not both:
            return None
        x = output[0] if layout == "first" else output  # [B, T, D]
        # CFG batch = [unconditional; conditional]
        lo = x.shape[0] // 2 if (diffusion and state.cfg and not both) else 0
        t0 = state.text_len if layout == "image_tail" else 0
        part = x[lo:, t0:] if (lo or t0) else x
        new = fn(site.name, part, None if diffusion else state.mask)
        if new is None:
            return None
        if t0:
            full = x.clone()
            full[lo:, t0:] = new
            new = full
        elif lo:
            new = torch.cat((x[:lo], new))  # one copy of the batch, not a clone plus a write of the steered half
        return (new, *output[1:]) if layout == "first" else new

    return hook


def _select(sites: list[Site], names) -> list[Site]:
    if names is None:
        return sites
    known = {s.name for s in sites}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown site(s) {', '.join(unknown)}; this model has {', '.join(sorted(known))}")
    return [s for s in sites if s.name in set(names)]


def _patch_forward(module: nn.Module, hook, patches: Patches) -> None:
    """Apply `hook(module, args, output)` inside `module`'s forward, as an instance attribute. Dynamo guards on
    that attribute (the first steered call recompiles once; removing it brings the plain graph back), while it
    does not guard on forward hooks: a compiled graph silently skips hooks added after it was built."""

    def wrapper_of(forward):
        @functools.wraps(forward)
        def steered_forward(*args, **kwargs):
            output = forward(*args, **kwargs)
            new = hook(module, args, output)
            return output if new is None else new
        return steered_forward

    patches.patch(module, "forward", wrapper_of)


def _root(target) -> nn.Module:
    return denoiser_of(target) if is_pipeline(target) else language_model_of(target)


@contextmanager
def _attached(target, fn: SiteFn, state: CallState, *, llm_site: str, sites=None,
              cfg_halves: str = "conditional", compiled: bool = False,
              on_call: Callable[[], None] | None = None) -> Iterator[CallState]:
    """`fn` on every site call through forward hooks, or through forward patches (`_patch_forward`) when the
    model is `compiled`; `on_call` runs (eagerly) before every denoiser call."""
    patches = Patches()
    diffusion = is_pipeline(target)
    chosen = _select(resolve_sites(target, llm_site), sites)
    try:
        if diffusion:
            track_pipeline(target, state, patches, on_call=on_call)
        else:
            track_language_model(language_model_of(target), state, patches)
        for site in chosen:
            hook = _site_hook(site, state, fn, diffusion, cfg_halves)
            if compiled:
                _patch_forward(site.module, hook, patches)
            else:
                patches.handles.append(site.module.register_forward_hook(hook))
        yield state
    finally:
        patches.remove()


# ------------------------------------------------------------------------------------------ public API


LLM_POSITIONS = ("all", "last_prompt", "generated")
"""Which positions of an LLM call are steered: every prompt and generated position; the last prompt token
(the one that produces the first answer token) and every generated one; or the generated ones only."""


def _last_valid(x: Tensor, mask: Tensor | None) -> Tensor:
    """Index [B] of each row's last valid position of x [B, T, D] (left or right padding, via mask [B, T])."""
    B, T = x.shape[:2]
    if mask is None:
        return torch.full((B,), T - 1, dtype=torch.long, device=x.device)
    pos = torch.arange(T, device=x.device).expand(B, T)
    return torch.where(mask, pos, -1).amax(1).clamp_min(0)


def resolve_llm_positions(positions: str | None, generated_only: bool) -> str:
    """The steered LLM positions from `positions` (one of LLM_POSITIONS) and the older `generated_only` flag
    (True means 'generated'); a contradiction is one ConfigError."""
    if positions is None:
        return "generated" if generated_only else "all"
    if positions not in LLM_POSITIONS:
        raise ConfigError(f"unknown llm_positions '{positions}'; choose one of {', '.join(LLM_POSITIONS)}")
    if generated_only and positions != "generated":
        raise ConfigError(f"generated_only: true contradicts llm_positions: {positions}; set llm_positions alone")
    return positions


# An edit source gets (site name, activations [B, T, D]) and returns the edit x -> x' of this call, or None
# when the site is not steered at this step.
EditAt = Callable[[str, Tensor], "Callable[[Tensor], Tensor] | None"]


def _plan_edits(plan: SteeringPlan, sites: list[str], strength: Strength, cfg_halves: str,
                state: CallState) -> EditAt:
    """Eager: the plan's map of the current step, at the strength of the call's rows."""
    cache: dict = {"step": None, "maps": {}}
    strengths: dict = {}  # per-sample strengths copied once per device (and CFG layout), not once per hook call

    def edit_at(site: str, x: Tensor):
        if cache["step"] != state.step:  # look the maps up once per step, not once per hook call
            cache["maps"] = {s: plan.map_for(state.step, s) for s in sites}
            cache["step"] = state.step
        m = cache["maps"].get(site)
        if m is None:
            return None
        beta = strength
        if isinstance(strength, Tensor):
            halves = 2 if cfg_halves == "both" and state.cfg and strength.ndim else 1  # rows [uncond; cond]
            beta = strengths.get((x.device, halves))
            if beta is None:
                b = strength.to(x.device)  # a 0-d strength stays one number for every row
                beta = strengths[(x.device, halves)] = b.repeat(halves) if b.ndim else b
        return lambda y: m.edit(y, beta)

    return edit_at


def _device_of(module: nn.Module) -> torch.device:
    p = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if p is None else p.device


def _stacked_edits(plan: SteeringPlan, sites: list[Site], strength: Strength, cfg_halves: str,
                   state: CallState) -> tuple[EditAt, Callable[[], None]]:
    """Compiled: each site's maps stacked over the plan's steps on the site's device (`SteeringPlan.stacked`),
    read at a 0-d step tensor that the returned `on_call` fills in place before each denoiser call, outside the
    graph, and applied at a strength held as a tensor on the device: nothing the graph is specialised on
    changes with the diffusion step or the strength value."""
    devices = {s.name: _device_of(s.module) for s in sites}
    steps = {d: torch.zeros((), dtype=torch.long, device=d) for d in set(devices.values())}  # [] per device
    beta = strength.detach() if isinstance(strength, Tensor) else torch.tensor(float(strength))
    per_site = {}
    for s in sites:
        d = devices[s.name]
        b = beta.to(d)
        # per-sample strengths as the rows come: the produced samples, or [uncond; cond] for cfg_halves="both"
        per_site[s.name] = (plan.stacked(s.name).to(d), steps[d], (b, b.repeat(2) if b.ndim else b))
    filled = [0]

    def on_call() -> None:
        k = plan.step_index(state.step)  # a step past the plan raises here, before the graph runs
        if k != filled[0]:
            for t in steps.values():
                t.fill_(k)
            filled[0] = k

    both = cfg_halves == "both"

    def edit_at(site: str, x: Tensor):
        m, step, betas = per_site[site]
        beta = betas[1 if both and state.cfg else 0]
        return lambda y: m.edit(y, beta, step)

    return edit_at, on_call


def _steer_positions(positions: str, state: CallState, edit_at: EditAt) -> SiteFn:
    """The site function of attach_steering: the edit on the steered positions of the call (`llm_positions`)."""

    def steer(site: str, x: Tensor, mask: Tensor | None) -> Tensor | None:
        if positions == "generated" and not state.decoding:
            return None
        edit = edit_at(site, x)
        if edit is None:
            return None
        if positions == "last_prompt" and not state.decoding:  # prefill: the last prompt token of each row
            rows = torch.arange(x.shape[0], device=x.device)
            last = _last_valid(x, mask)  # [B]
            new = x.clone()
            new[rows, last] = edit(x[rows, last].unsqueeze(1)).squeeze(1)  # [B, 1, D] -> [B, D]
            return new
        new = edit(x)
        return new if mask is None else torch.where(mask.unsqueeze(-1), new, x)

    return steer


@contextmanager
def attach_steering(target, plan: SteeringPlan, strength: Strength = 1.0, *, llm_site: str = "self_attn",
                    steer_only_up: bool = False, generated_only: bool = False, llm_positions: str | None = None,
                    cfg_halves: str = "conditional"):
    """Steer every call of `target` (a pipeline or causal LM) inside the block with `plan` at `strength`.

    strength: a float, or a tensor [N] with one strength per produced sample (diffusion: prompts ×
    images per prompt in output order; LLM: batch rows). Under batched CFG only the conditional half is
    steered, or both halves with cfg_halves="both" (each unconditional row at its sample's strength). Step k
    of a generation uses plan.map_for(k, site). steer_only_up skips the UNet `down` blocks.
    llm_positions (LLMs, `LLM_POSITIONS`): 'all' (default) steers the prompt (prefill) and every generated
    token; 'last_prompt' only the prompt's last token and the generated ones; 'generated' leaves the prompt
    unsteered (= generated_only=True). Yields the live `CallState` (step, CFG flag).

    A model compiled with torch.compile (in place, wrapped, or a compiled submodule) is steered through
    forward patches that the compiled graph sees; the maps must then be `RankOneEdit`, `AddVector` or
    `Sequential` (they are stacked over steps, `SteeringPlan.stacked`).
    """
    check_strength(strength)
    if (generated_only or llm_positions not in (None, "all")) and is_pipeline(target):
        raise ConfigError("generated_only / llm_positions apply to language models, not to diffusion pipelines")
    positions = resolve_llm_positions(llm_positions, generated_only)
    if cfg_halves not in CFG_HALVES:
        raise ConfigError(f"cfg_halves must be one of {', '.join(CFG_HALVES)}, got {cfg_halves!r}")
    if cfg_halves != "conditional" and not is_pipeline(target):
        raise ConfigError("cfg_halves applies to diffusion pipelines (classifier-free guidance), "
                          "not to language models")
    if isinstance(strength, Tensor) and strength.ndim > 1:
        raise ConfigError("strength must be a number or a 1-D tensor of per-sample strengths, "
                          f"got shape {list(strength.shape)}")
    model_sites = find_plan_sites(target, plan, llm_site)
    if steer_only_up:
        model_sites = [s for s in model_sites if not s.startswith("down.")]
    state = CallState()
    compiled = compiled_module(_root(target)) is not None
    on_call = None
    if compiled:
        edit_at, on_call = _stacked_edits(plan, _select(resolve_sites(target, llm_site), model_sites), strength,
                                          cfg_halves, state)
    else:
        edit_at = _plan_edits(plan, model_sites, strength, cfg_halves, state)
    steer = _steer_positions(positions, state, edit_at)
    with _attached(target, steer, state, llm_site=llm_site, sites=model_sites, cfg_halves=cfg_halves,
                   compiled=compiled, on_call=on_call):
        yield state


def find_plan_sites(target, plan: SteeringPlan, llm_site: str = "self_attn") -> list[str]:
    """The plan's sites, checked against the model: every one must exist with the plan's width D."""
    dims = {s.name: s.dim for s in resolve_sites(target, llm_site)}
    missing = [s for s in plan.sites if s not in dims]
    if missing:
        raise ConfigError(f"the steering plan has site(s) {', '.join(missing[:5])} that {type(target).__name__} "
                          f"lacks (it has {', '.join(list(dims)[:5])}, …); were the vectors fitted on this model"
                          f"{'' if is_pipeline(target) else f' with llm_site={llm_site!r}'}?")
    for (step, site), m in plan.maps.items():
        if m.dim != dims[site]:
            raise ShapeMismatchError(f"site '{site}' has D={dims[site]} in the model but D={m.dim} in the plan")
    return plan.sites


@contextmanager
def collect_statistics(target, stats: ActivationStats, *, llm_site: str = "self_attn", sites=None):
    """Feed `stats.add(step, site, x, mask)` from every call of `target` inside the block (conditional half
    only under CFG; LLM padding excluded through the attention mask). Nothing per token is kept."""
    name = compiled_module(_root(target))
    if name is not None:
        raise SteerError(f"{type(_root(target)).__name__}.{name or '(root)'} is compiled (torch.compile): statistics "
                         "accumulate with Python side effects that a compiled graph cannot run; collect them on the "
                         "uncompiled model")
    state = CallState()

    def read(site: str, x: Tensor, mask: Tensor | None) -> None:
        stats.add(state.step, site, x, mask)

    with torch.no_grad(), _attached(target, read, state, llm_site=llm_site, sites=sites):
        yield stats
    stats.flush()  # rows held back for one larger product (ActivationStats.buffer_mb) are folded in now
