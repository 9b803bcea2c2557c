"""Where a steered forward's extra time goes, measured inside the forward at real width.

`bench_real_width.py` times whole forwards; on a shared CPU two identical forwards differ by a few percent
(memory bandwidth taken by other work), more than the goals it checks (hooks ≤ 1.02×, folded ≤ 1.005×). This
script measures the extra work itself, on the same models (`bench_real_width.build`, random plans at every
site, strength 2):

- hooks: the time spent inside the hooks that `attach_steering` adds (every forward hook and pre-hook it
  registers, on the sites and on the denoiser or language model), read with a timing hook registered just
  before and one just after them. Zero point: the same timing hooks with nothing between them. The scheduler
  wrappers of a pipeline (a few µs per step) are not counted.
- folded: the time spent in the linear layers that folding rewrites (the layer producing each site), folded
  against the same layers unsteered and against the control "weights copied" (fresh copies of the same
  weights, see bench_real_width.py).

Both are divided by the plain forward's median time, which gives the ratio the steered forward would have if
its only extra cost were the one measured: `1 + extra / plain`. Rounds alternate each variant with its zero
point; medians over rounds. Writes results/benchmarks/attribution.tsv (one row per model × variant).

    .venv/bin/python benchmarks/bench_attribution.py [--models llama2-7b sd15 sdxl] [--repeats 5]
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from torch import nn  # noqa: E402

from bench_real_width import COPIED, FOLDED, HOOKED, build, parse_args, random_plan, run_models  # noqa: E402
from steercore.models.folding import folded  # noqa: E402
from steercore.models.hooks import attach_steering  # noqa: E402
from steercore.models.sites import find_sites, resolve_sites  # noqa: E402


def added_hooks(model: nn.Module, ctx) -> dict[nn.Module, tuple[bool, bool]]:
    """The modules of `model` to which entering `ctx()` adds pre-hooks and/or forward hooks."""
    before = {m: (set(m._forward_pre_hooks), set(m._forward_hooks)) for m in model.modules()}
    with ctx():
        spans = {m: (bool(set(m._forward_pre_hooks) - b[0]), bool(set(m._forward_hooks) - b[1]))
                 for m, b in before.items()}
    return {m: s for m, s in spans.items() if any(s)}


@contextmanager
def timed_between(spans: dict[nn.Module, tuple[bool, bool]], total: list[float]):
    """On each module, a timing hook first and one last among its pre-hooks (spans[m][0]) and/or its forward
    hooks (spans[m][1]); the seconds between each pair are added to total[0]."""
    handles, start = [], {}

    def begin(key):
        def hook(*_):
            start[key] = time.perf_counter()
        return hook

    def end(key):
        def hook(*_):
            total[0] += time.perf_counter() - start.pop(key)
        return hook

    for m, (pre, post) in spans.items():
        if pre:
            handles += [m.register_forward_pre_hook(begin((m, 0)), prepend=True),
                        m.register_forward_pre_hook(end((m, 0)))]
        if post:
            handles += [m.register_forward_hook(begin((m, 1)), prepend=True), m.register_forward_hook(end((m, 1)))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def timed_layers(layers: list[nn.Module], total: list[float]):
    """Seconds spent inside `layers`' forwards, added to total[0]."""
    handles, start = [], {}

    def begin(m, args):
        start[m] = time.perf_counter()

    def end(m, args, output):
        total[0] += time.perf_counter() - start.pop(m)

    for layer in layers:
        handles += [layer.register_forward_pre_hook(begin, prepend=True), layer.register_forward_hook(end)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def hook_seconds(spans, ctx, call, repeats: int) -> float:
    """Median over rounds of the seconds per `call()` between the timing hooks of `spans` with `ctx()` entered,
    less the same without it (the zero point: the timing hooks themselves and any hooks the model already had)."""
    steered, empty = [], []
    for _ in range(repeats + 1):  # the first round warms up
        for out, c in ((steered, ctx), (empty, nullcontext)):
            total = [0.0]
            with c(), timed_between(spans, total):
                call()
            out.append(total[0])
    return statistics.median(s - e for s, e in zip(steered[1:], empty[1:]))


def hooks_rows(name, model, target, call, plans, plain_s, repeats) -> list[tuple]:
    """Seconds per forward inside the steering hooks, against the same timing hooks around nothing."""
    rows = []
    for label, plan in plans.items():
        steer = lambda p=plan: attach_steering(target, p, 2.0)  # noqa: E731
        spans = added_hooks(model, steer)
        extra = hook_seconds(spans, steer, call, repeats)
        calls = sum(pre + post for pre, post in spans.values())
        rows.append((name, label, extra, 1 + extra / plain_s))
        print(f"  {label:<24} {extra * 1e3:7.2f} ms per forward in the hooks ({calls} hooked modules)  "
              f"→ ×{1 + extra / plain_s:.4f}", flush=True)
    return rows


def folded_rows(name, target, call, plans, plain_s, repeats) -> list[tuple]:
    """Seconds per forward inside the folded linear layers: folded, the control, and unsteered."""
    layers = [s.linear for s in resolve_sites(target) if s.linear is not None]
    variants = {**{f"folded {m}": (lambda p=p: folded(target, p, 2.0)) for m, p in plans.items()},
                COPIED: lambda: folded(target, plans["casteer"], 0.0), "plain": nullcontext}
    t = {k: [] for k in variants}
    for r in range(repeats + 1):
        for k, ctx in variants.items():
            total = [0.0]
            with ctx(), timed_layers(layers, total):
                call()
            if r:
                t[k].append(total[0])
    rows = []
    share = statistics.median(t["plain"]) / plain_s
    print(f"  the {len(layers)} foldable layers take {statistics.median(t['plain']) * 1e3:.1f} ms "
          f"({share:.1%} of the plain forward)")
    pairs = [(f"folded {m}", ref) for m in plans for ref in ("plain", COPIED)] + [(COPIED, "plain")]
    for k, ref in pairs:
        extra = statistics.median(a - b for a, b in zip(t[k], t[ref]))
        label = k if ref == "plain" else f"{k} vs {COPIED}"
        rows.append((name, label, extra, 1 + extra / plain_s))
        print(f"  {label:<38} {extra * 1e3:+7.2f} ms per forward in those layers → ×{1 + extra / plain_s:.4f}",
              flush=True)
    return rows


def bench(name: str, repeats: int) -> list[tuple]:
    target, model, call = build(name)
    sites = find_sites(target)
    call()
    plain = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        plain.append(time.perf_counter() - t0)
    plain_s = statistics.median(plain)
    print(f"\n{name}: {len(sites)} sites, plain forward {plain_s * 1e3:.0f} ms", flush=True)
    rows = [(name, "plain", plain_s, 1.0)]
    rows += hooks_rows(name, model, target, call,
                       {f"hooks {m}{' clip' if c else ''}": random_plan(sites, m, c) for m, c in HOOKED}, plain_s,
                       repeats)
    rows += folded_rows(name, target, call, {m: random_plan(sites, m, clip=False) for m in FOLDED}, plain_s, repeats)
    del target, model, call
    gc.collect()
    return rows


def main() -> None:
    args = parse_args(__doc__, "attribution.tsv")
    run_models(args, lambda name: bench(name, args.repeats), "extra_s_per_forward\tratio")


if __name__ == "__main__":
    main()
