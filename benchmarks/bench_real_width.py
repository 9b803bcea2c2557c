"""Cost of steering and of the statistics pass at real width: models of the real configs with random weights.

Three models, cut so that one run fits a few minutes on a 2-core CPU (the cuts leave every layer at its real
width; only the number of layers, the vocabulary and the latent size shrink):

- llama2-7b: Llama-2-7B layers (d = 4096, FFN 11008, 32 heads), 2 decoder layers, vocabulary 1024,
  one prefill forward of batch 1 × 32 tokens; sites layers.*.self_attn;
- sd15: the full SD 1.5 UNet config (320/640/1280/1280, cross-attention 768), latent 16×16 (128 px);
- sdxl: the SDXL UNet config (320/640/1280, cross-attention 2048, text-time embedding) with the transformer
  depth cut from (1, 2, 10) to (1, 2, 2), latent 16×16;

the UNets run a 2-step DDIM loop at guidance 1 (no CFG, so folding applies), batch 1.

Variants, paired in shuffled rounds (every round runs each variant once; ratios are medians of per-round
ratios, of wall time and of process CPU time — on a shared machine the CPU ratio is the steadier): plain; hooks for each method with clipping off and on (casteer, leace, midsteer) and casteer_add;
folded leace (μ ≠ 0: a bias is added where the layer has none) and folded casteer (no bias), each also against
its control "weights copied" (the same layers with fresh copies of their own weights); the statistics
pass (collect_statistics, aggregation 'all', 8 forwards and the fold-in of held-back rows, against 8 plain
forwards: float32 batch scatter, the same with every call folded in at once (`buffer_mb=0`, as before rows
were held back), and the float64 option); then, after `module.compile()` (inductor, or `--backend`),
compiled plain, compiled folded and compiled hooks (every hooked variant above: attach_steering patches the
site modules' forward, so the first steered call of each plan structure compiles once, before the timed
rounds), each against compiled plain.

    .venv/bin/python benchmarks/bench_real_width.py [--models llama2-7b sd15 sdxl] [--repeats 5] [--no-compile]
        [--backend inductor]

Prints ratios and writes results/benchmarks/perf.tsv (one row per model × variant, with the commit).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_hooks import interleaved  # noqa: E402
from steercore.core.files import write_text_atomic  # noqa: E402
from steercore.core.methods import fit_method  # noqa: E402
from steercore.core.plan import SteeringPlan  # noqa: E402
from steercore.core.stats import ActivationStats  # noqa: E402
from steercore.models.folding import folded  # noqa: E402
from steercore.models.hooks import attach_steering, collect_statistics  # noqa: E402
from steercore.models.sites import find_sites  # noqa: E402

HOOKED = [("casteer", False), ("casteer", True), ("leace", False), ("leace", True), ("midsteer", False),
          ("midsteer", True), ("casteer_add", False)]
FOLDED = ("leace", "casteer")
COPIED = "weights copied"
STAT_CALLS = 8  # forwards per timed statistics pass (the cov stage makes thousands)


def random_plan(sites: dict[str, int], method: str, clip: bool, seed: int = 0) -> SteeringPlan:
    """A single-step plan at every site from random means. Σ = I: applying a map costs the same for any Σ
    (it is a few [D] vectors), and an eigh of 4096×4096 per site would dominate the run."""
    g = torch.Generator().manual_seed(seed)
    maps = {}
    for site, D in sites.items():
        s, t, mu = (torch.randn(D, generator=g, dtype=torch.float64) for _ in range(3))
        maps[(0, site)] = fit_method(method, source=s, target=t, mu=mu, identity_cov=True, clip=clip)
    return SteeringPlan(maps, method)


class DenoiseLoop:
    """A pipeline reduced to its denoising loop (what the hooks see): `unet`, `scheduler`, and a call that
    runs `steps` scheduler steps on a random latent with fixed text embeddings."""

    def __init__(self, unet, steps: int, latent: int, text_dim: int, extra: dict | None = None):
        from diffusers import DDIMScheduler

        self.unet, self.scheduler, self.steps = unet, DDIMScheduler(), steps
        g = torch.Generator().manual_seed(0)
        self.latent = torch.randn(1, 4, latent, latent, generator=g)
        self.text = torch.randn(1, 77, text_dim, generator=g)
        self.extra = extra or {}

    do_classifier_free_guidance = property(lambda self: False)

    @torch.no_grad()
    def __call__(self):
        self.scheduler.set_timesteps(self.steps)
        x = self.latent
        for t in self.scheduler.timesteps:
            eps = self.unet(x, t, encoder_hidden_states=self.text, **self.extra).sample
            x = self.scheduler.step(eps, t, x).prev_sample
        return x


def build(name: str):
    """(target for the hooks, the module to compile, a no-argument call)."""
    torch.manual_seed(0)
    if name == "llama2-7b":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
                          num_hidden_layers=2, vocab_size=1024, max_position_embeddings=4096)
        model = LlamaForCausalLM(cfg).eval()
        ids = torch.randint(0, 1024, (1, 32), generator=torch.Generator().manual_seed(0))

        @torch.no_grad()
        def call():
            return model(input_ids=ids, use_cache=False).logits
        return model, model, call
    from diffusers import UNet2DConditionModel

    if name == "sd15":
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
            attention_head_dim=8, sample_size=64).eval()
        loop = DenoiseLoop(unet, steps=2, latent=16, text_dim=768)
    elif name == "sdxl":
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 2), attention_head_dim=(5, 10, 20), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816, sample_size=128).eval()
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(1, 1280),
                                       "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128]])}}
        loop = DenoiseLoop(unet, steps=2, latent=16, text_dim=2048, extra=extra)
    else:
        raise SystemExit(f"unknown model '{name}'; choose llama2-7b, sd15 or sdxl")
    return loop, unet, loop


def statistics_pass(target, call, calls: int, precision: str, buffer_mb: float | None = None):
    """A cov-stage pass in miniature: `calls` forwards under collect_statistics, then every held-back row
    folded in, all inside the timed region (ActivationStats holds small calls back for one larger product)."""
    held = {}

    def ctx():
        kw = {} if buffer_mb is None else {"buffer_mb": buffer_mb}
        held["stats"] = ActivationStats("neutral", "all", precision=precision, **kw)
        return collect_statistics(target, held["stats"])

    def run():
        for _ in range(calls):
            call()
        held["stats"].flush()
    return ctx, run


def ratio(t: dict, a: str, b: str) -> tuple[float, float]:
    """Medians over rounds of a/b for wall time and for CPU time."""
    wall = statistics.median(x / y for x, y in zip(t[a], t[b]))
    cpu = statistics.median(x / y for x, y in zip(t[f"{a}:cpu"], t[f"{b}:cpu"]))
    return wall, cpu


def against_copied(name: str, t: dict, prefix: str) -> list[tuple]:
    """The folded rows against their control (the same layers with fresh copies of their own weights)."""
    rows = []
    for m in FOLDED:
        k = f"{prefix}folded {m}"
        wall, cpu = ratio(t, k, f"{prefix}{COPIED}")
        rows.append((name, f"{k} vs {COPIED}", statistics.median(t[k]), wall, cpu))
        print(f"  {k:<28} wall ×{wall:.3f}   cpu ×{cpu:.3f} of {prefix}{COPIED}", flush=True)
    return rows


def bench(name: str, repeats: int, compile_: bool, backend: str = "inductor") -> list[tuple]:
    t_build = time.perf_counter()
    target, module, call = build(name)
    sites = find_sites(target)
    params = sum(p.numel() for p in module.parameters())
    print(f"\n{name}: {params / 1e6:.0f}M parameters, {len(sites)} sites (D = {sorted(set(sites.values()))}), "
          f"built in {time.perf_counter() - t_build:.0f} s", flush=True)
    variants = {"plain": (None, call)}
    hook_plans = {f"hooks {method}{' clip' if clip else ''}": random_plan(sites, method, clip) for method, clip in HOOKED}
    for label, plan in hook_plans.items():
        variants[label] = (lambda p=plan: attach_steering(target, p, 2.0), call)
    fold_plans = {m: random_plan(sites, m, clip=False) for m in FOLDED}
    for m, plan in fold_plans.items():
        variants[f"folded {m}"] = (lambda p=plan: folded(target, p, 2.0), call)
    # the control of the folded rows: the same layers get fresh copies of their own weights (casteer folded at
    # β = 0 is W exactly and adds no bias), so that folding's own cost can be told from where the new weights
    # landed in memory (a few % either way on this CPU, where the UNets' small-latent matmuls are bound by
    # reading the weights)
    def copied():
        return folded(target, fold_plans["casteer"], 0.0)
    variants[COPIED] = (copied, call)
    # the statistics pass, against as many plain calls: float32 product (held-back rows, and each call folded
    # in at once as before ActivationStats.buffer_mb), and the float64 option
    variants[f"plain x{STAT_CALLS}"] = (None, lambda: [call() for _ in range(STAT_CALLS)])
    for label, precision, buffer_mb in (("float32", "float32", None), ("float32 unbuffered", "float32", 0),
                                        ("float64", "float64", None)):
        variants[f"statistics {label}"] = statistics_pass(target, call, STAT_CALLS, precision, buffer_mb)
    t = interleaved(variants, repeats)
    plain = statistics.median(t["plain"])
    rows = [(name, "plain", plain, 1.0, 1.0)]
    print(f"  plain forward {plain * 1e3:.0f} ms (median of {repeats} paired rounds)")
    for k in variants:
        if k not in ("plain", f"plain x{STAT_CALLS}"):
            wall, cpu = ratio(t, k, f"plain x{STAT_CALLS}" if k.startswith("statistics") else "plain")
            rows.append((name, k, statistics.median(t[k]), wall, cpu))
            print(f"  {k:<28} wall ×{wall:.3f}   cpu ×{cpu:.3f}", flush=True)
    rows += against_copied(name, t, "")
    if compile_:
        module.compile(backend=backend)
        t_compile = time.perf_counter()
        call()
        with folded(target, fold_plans["leace"], 2.0):
            call()  # the one recompile for the added bias, outside the timed rounds
        print(f"  compile (plain + folded leace): {time.perf_counter() - t_compile:.0f} s", flush=True)
        t_compile = time.perf_counter()
        for plan in hook_plans.values():  # one graph per plan structure (clip, μ, kind), outside the timed rounds
            with attach_steering(target, plan, 2.0):
                call()
        print(f"  compile (hooks, {len(hook_plans)} variants): {time.perf_counter() - t_compile:.0f} s", flush=True)
        tc = interleaved({"compiled plain": (None, call),
                          **{f"compiled folded {m}": (lambda p=p: folded(target, p, 2.0), call)
                             for m, p in fold_plans.items()},
                          f"compiled {COPIED}": (copied, call),
                          **{f"compiled {label}": (lambda p=p: attach_steering(target, p, 2.0), call)
                             for label, p in hook_plans.items()}}, repeats)
        cplain = statistics.median(tc["compiled plain"])
        cpu_plain = statistics.median(tc["compiled plain:cpu"]) / statistics.median(t["plain:cpu"])
        rows.append((name, "compiled plain", cplain, cplain / plain, cpu_plain))
        print(f"  compiled plain {cplain * 1e3:.0f} ms (wall ×{cplain / plain:.3f}, cpu ×{cpu_plain:.3f} of eager plain, "
              "unpaired)", flush=True)
        for k in ([f"compiled folded {m}" for m in fold_plans] + [f"compiled {COPIED}"]
                  + [f"compiled {label}" for label in hook_plans]):
            wall, cpu = ratio(tc, k, "compiled plain")
            rows.append((name, k, statistics.median(tc[k]), wall, cpu))
            print(f"  {k:<28} wall ×{wall:.3f}   cpu ×{cpu:.3f} of compiled plain", flush=True)
        rows += against_copied(name, tc, "compiled ")
        torch._dynamo.reset()
    del target, module, call, variants
    gc.collect()
    return rows


def parse_args(doc: str, out_name: str, more=None) -> argparse.Namespace:
    """The options both real-width benchmarks take (and `more(parser)`'s)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["llama2-7b", "sd15", "sdxl"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    if more:
        more(ap)
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks" / out_name))
    return ap.parse_args()


def run_models(args: argparse.Namespace, bench_one, header: str) -> None:
    """`bench_one(model name)` for each model; its rows (model, variant, numbers…) go to args.out with the
    commit, rewritten after each model so that an interrupted run keeps the models it finished."""
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    print(f"torch {torch.__version__}, {args.threads} thread(s), commit {commit}, median of {args.repeats} rounds")
    out, rows = Path(args.out), []
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        rows += bench_one(name)
        lines = [f"commit\tmodel\tvariant\t{header}"]
        lines += ["\t".join([commit, m, v, *(f"{x:.6f}" for x in xs)]) for m, v, *xs in rows]
        write_text_atomic(out, "\n".join(lines) + "\n")
        print(f"wrote {out}", flush=True)


def main() -> None:
    def more(ap):
        ap.add_argument("--no-compile", action="store_true")
        ap.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled rows")
    args = parse_args(__doc__, "perf.tsv", more)
    # per compiled frame: plain, folded with a bias, and one graph per hooked plan structure (5 here)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)
    run_models(args, lambda name: bench(name, args.repeats, not args.no_compile, args.backend),
               "median_s\twall_ratio\tcpu_ratio")


if __name__ == "__main__":
    main()
