"""Wall-time cost of steering: steered / unsteered ratio with hooks (CASteer, clipping on) and folded (LEACE).

Measured in one run on the tiny SD pipeline and the tiny Llama of tests/tiny_models.py (CPU, 1 thread by
default). Tiny models make the fixed per-hook Python cost look large; the per-call overhead in µs is printed
so it can be set against a real model's step time.

    .venv/bin/python benchmarks/bench_hooks.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

import tiny_models as tm  # noqa: E402
from steercore.models.folding import folded  # noqa: E402
from steercore.models.hooks import attach_steering  # noqa: E402
from steercore.models.sites import find_sites  # noqa: E402


def interleaved(variants: dict, repeats: int) -> dict[str, list[float]]:
    """Per-round seconds of one call of each variant: wall time, process CPU time ('<name>:cpu') and the cost
    of entering + leaving its context ('<name>:enter').

    Each variant is (context factory or None, call); the context (attach / fold) is entered outside the timed
    region. Every round runs each variant once, in a shuffled order, so that a steered run and its unsteered
    reference see the same load on a shared machine; ratios are then taken per round (paired)."""
    times = {f"{k}{tag}": [] for k in variants for tag in ("", ":cpu", ":enter")}
    order = list(variants)
    rng = random.Random(0)
    for r in range(repeats + 1):  # the first round warms up
        rng.shuffle(order)
        for k in order:
            ctx, fn = variants[k]
            t0 = time.perf_counter()
            cm = ctx() if ctx else contextlib.nullcontext()
            cm.__enter__()
            t1, c1 = time.perf_counter(), time.process_time()
            fn()
            t2, c2 = time.perf_counter(), time.process_time()
            cm.__exit__(None, None, None)
            if r:
                times[k].append(t2 - t1)
                times[f"{k}:cpu"].append(c2 - c1)
                times[f"{k}:enter"].append(t1 - t0 + time.perf_counter() - t2)
    return times


def ratio(t: dict, steered: str, plain: str) -> str:
    """Median over rounds of steered/unsteered, for wall and CPU time."""
    wall = statistics.median(a / b for a, b in zip(t[steered], t[plain]))
    cpu = statistics.median(a / b for a, b in zip(t[f"{steered}:cpu"], t[f"{plain}:cpu"]))
    return f"wall {wall:.3f}, cpu {cpu:.3f}"


def per_call_us(t: dict, steered: str, plain: str, calls: int) -> float:
    """Median over rounds of the extra CPU time per hook call, in µs."""
    return statistics.median((a - b) / calls * 1e6 for a, b in zip(t[f"{steered}:cpu"], t[f"{plain}:cpu"]))


def med(t: dict, key: str) -> float:
    return statistics.median(t[key])


def bench_sd(cache: Path, repeats: int) -> None:
    pipe = tm.load_pipeline("sd", cache)
    sites = find_sites(pipe)
    hooks_plan = tm.random_plan(sites, "casteer")  # clipping on (the casteer default)
    fold_plan = tm.random_plan(sites, "leace", clip=False)
    steps = 4

    def run(guidance):
        return lambda: pipe(prompt=["a red cat", "a blue dog"], num_images_per_prompt=2, num_inference_steps=steps,
                            guidance_scale=guidance, generator=torch.Generator().manual_seed(0), output_type="latent")

    t = interleaved({
        "plain": (None, run(1.0)),
        "hooks": (lambda: attach_steering(pipe, hooks_plan, 2.0), run(1.0)),
        "folded": (lambda: folded(pipe, fold_plan, 2.0), run(1.0)),
        "plain_cfg": (None, run(7.5)),
        "hooks_cfg": (lambda: attach_steering(pipe, hooks_plan, 2.0), run(7.5)),
    }, repeats)
    calls = steps * len(sites)
    print(f"tiny SD ({len(sites)} sites, {steps} steps, 4 images, 16 px): unsteered {med(t, 'plain') * 1e3:.1f} ms")
    print(f"  hooks  (casteer, clip)      ratio {ratio(t, 'hooks', 'plain')}   "
          f"(+{per_call_us(t, 'hooks', 'plain', calls):.0f} µs CPU per hook call)")
    print(f"  folded (leace)              ratio {ratio(t, 'folded', 'plain')}   "
          f"(fold + unfold {med(t, 'folded:enter') * 1e3:.2f} ms; attach + detach {med(t, 'hooks:enter') * 1e3:.2f} ms)")
    print(f"  hooks under CFG 7.5         ratio {ratio(t, 'hooks_cfg', 'plain_cfg')}   "
          f"(unsteered {med(t, 'plain_cfg') * 1e3:.1f} ms)")


def bench_llama(cache: Path, repeats: int) -> None:
    model, tok = tm.load_lm("llama", cache)
    enc = tok(["what is a red cat", "tell me a story about the dog please", "why is the horse large", "a pig"],
              return_tensors="pt", padding=True)
    sites = find_sites(model)
    hooks_plan = tm.random_plan(sites, "casteer")
    fold_plan = tm.random_plan(sites, "leace", clip=False)
    new = 32

    def run():
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)

    t = interleaved({"plain": (None, run), "hooks": (lambda: attach_steering(model, hooks_plan, 2.0), run),
                     "folded": (lambda: folded(model, fold_plan, 2.0), run)}, repeats)
    calls = new * len(sites)
    print(f"tiny Llama ({len(sites)} layers, batch 4, {new} new tokens): unsteered {med(t, 'plain') * 1e3:.1f} ms")
    print(f"  hooks  (casteer, clip)      ratio {ratio(t, 'hooks', 'plain')}   "
          f"(+{per_call_us(t, 'hooks', 'plain', calls):.0f} µs CPU per hook call)")
    print(f"  folded (leace)              ratio {ratio(t, 'folded', 'plain')}   "
          f"(fold + unfold {med(t, 'folded:enter') * 1e3:.2f} ms; attach + detach {med(t, 'hooks:enter') * 1e3:.2f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers
    import transformers

    diffusers.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} paired rounds")
    with tempfile.TemporaryDirectory() as tmp:
        bench_sd(Path(tmp), args.repeats)
        bench_llama(Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
