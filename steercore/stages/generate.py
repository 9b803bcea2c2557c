"""The generate stage: images or answers for the conditions of one job (one condition, or every strength of a
method when the experiment packs), written under the experiment's folder.

Each output is one file, `{condition}/{concept}/{prompt index:03d}-{seed}.{png|txt}`, written atomically, and
files that exist are skipped, so a killed run resumes where it stopped. Each condition folder records in
`digest.txt` the digest of the settings its files were made with (Experiment.generation_digest); a folder made
under another digest is emptied first, so no output of an older configuration is ever reused. All strengths
in a job are batched together with a per-sample strength tensor; every sample has its own seeded generator, so
a sample does not depend on what else is in its batch.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from steercore.core.errors import ConfigError
from steercore.core.files import atomic_path, load_stats, write_text_atomic
from steercore.core.linalg import Regularization
from steercore.core.methods import get_method
from steercore.core.plan import SteeringPlan, build_plan
from steercore.experiments.preset import Condition, Experiment
from steercore.experiments.promptsets import eval_prompts
from steercore.models.hooks import attach_steering
from steercore.models.prompting import encode_chat
from steercore.models.registry import load_model, resolve_spec
from steercore.stages.vectors import write_plan_diagnostics
from steercore.tables import MANIFEST, write_tsv


@dataclass(frozen=True)
class Sample:
    """One generation: a test concept's prompt (by index) with one seed."""

    concept: str
    index: int
    prompt: str
    seed: int

    def path(self, root: Path, cond: Condition, ext: str) -> Path:
        return root / cond.label / self.concept / f"{self.index:03d}-{self.seed}.{ext}"


def experiment_samples(exp: Experiment) -> list[Sample]:
    """Every (concept, prompt, seed) of the experiment: seeds seed..seed+samples_per_prompt−1 for each prompt."""
    seeds = range(exp["seed"], exp["seed"] + exp["samples_per_prompt"])
    return [Sample(c, i, p, s) for c in exp.test_concepts for i, p in enumerate(eval_prompts(exp, c)) for s in seeds]


# ------------------------------------------------------------------------------------------------ images


def generate_images(pipe, samples: list[Sample], strengths: list[float] | None, *, steps: int, guidance: float,
                    plan: SteeringPlan | None = None, only_up: bool = False, cfg_halves: str = "conditional") -> list:
    """PIL images for `samples`, steered by `plan` with per-sample `strengths` (None: unsteered); cfg_halves:
    which halves of the CFG batch are steered (see attach_steering)."""
    device = getattr(pipe, "device", torch.device("cpu"))
    gens = [torch.Generator(device).manual_seed(s.seed) for s in samples]
    call = dict(prompt=[s.prompt for s in samples], num_inference_steps=steps, guidance_scale=guidance,
                generator=gens)
    if plan is None:
        return pipe(**call).images
    with attach_steering(pipe, plan, torch.tensor(strengths, dtype=torch.float32), steer_only_up=only_up,
                         cfg_halves=cfg_halves):
        return pipe(**call).images


def save_png(image, path: Path) -> None:
    """Lossless, at zlib level 1: Pillow's default (6) took 0.42 s per 1024-px image on one core, level 1 0.07 s
    for files 18% larger (the SANA stand-in's images), time the generate loop otherwise spends with the GPU idle."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)


# ----------------------------------------------------------------------------------------------- answers


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: list[str], seeds: list[int], *, model_name: str, max_new_tokens: int,
                   temperature: float, plan: SteeringPlan | None = None, strengths: list[float] | None = None,
                   llm_site: str = "self_attn", generated_only: bool = False,
                   llm_positions: str | None = None) -> list[str]:
    """Decode answers for a left-padded batch, each row sampled with its own seeded generator.

    transformers' `generate` draws from one global RNG, so a row's answer would depend on its batch; this
    loop keeps one torch.Generator per row instead (temperature 0: greedy).
    """
    device = next(model.parameters()).device
    enc = encode_chat(tokenizer, prompts, model_name, device)
    ids, mask = enc["input_ids"], enc["attention_mask"]  # [B, T]
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    eos = tokenizer.eos_token_id
    B = ids.shape[0]
    out = torch.full((B, max_new_tokens), tokenizer.pad_token_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    ctx = nullcontext() if plan is None else attach_steering(
        model, plan, torch.tensor(strengths, dtype=torch.float32), llm_site=llm_site, generated_only=generated_only,
        llm_positions=llm_positions)
    with ctx:
        past, step_ids, step_mask = None, ids, mask
        for k in range(max_new_tokens):
            pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, -step_ids.shape[1]:]  # [B, t] positions ignore padding
            res = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=past,
                        use_cache=True)
            past = res.past_key_values
            logits = res.logits[:, -1].float()  # [B, V]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.stack([torch.multinomial(probs[b], 1, generator=gens[b])[0] for b in range(B)])
            nxt = torch.where(done, torch.full_like(nxt, tokenizer.pad_token_id), nxt)
            out[:, k] = nxt
            done |= nxt == eos
            if done.all():
                break
            step_ids = nxt[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # [B, T + k + 1]
    answers = []
    for row in out.tolist():
        row = row[: row.index(eos)] if eos in row else row
        answers.append(tokenizer.decode([t for t in row if t != tokenizer.pad_token_id], skip_special_tokens=True).strip())
    return answers


# ------------------------------------------------------------------------------------------------ driver


DIGEST_FILE = "digest.txt"


def prepare_condition_folder(folder: Path, digest: str, ext: str) -> int:
    """Make `folder` hold only outputs of `digest`: remove temporaries of a killed write, and every output if
    the folder was made under another digest (or none); then record the digest. Returns the files removed."""
    removed = 0
    for stale in folder.glob(f"*/.*.{ext}"):  # temporaries of a run killed mid-write (never a final name)
        stale.unlink()
    record = folder / DIGEST_FILE
    if folder.is_dir() and (not record.is_file() or record.read_text().strip() != digest):
        for old in folder.glob(f"*/*.{ext}"):
            old.unlink()
            removed += 1
    write_text_atomic(record, digest + "\n")
    return removed


def run_generation(exp: Experiment, target, out_dir: Path, plans: dict[str, SteeringPlan], *, steps: int | None,
                   guidance: float | None, conditions: list[Condition] | None = None,
                   progress: bool = True) -> list[tuple[Condition, Sample, Path]]:
    """Generate every missing output of `conditions` (default: all of the experiment's) under the experiment
    folder `out_dir`; return their manifest.

    target: a pipeline (t2i) or (model, tokenizer) (lm). plans: method → SteeringPlan.
    """
    is_lm = isinstance(target, tuple)
    ext = "txt" if is_lm else "png"
    conditions = exp.conditions if conditions is None else conditions
    for cond in conditions:
        removed = prepare_condition_folder(out_dir / cond.label, exp.generation_digest(cond), ext)
        if removed:
            print(f"{cond.label}: removed {removed} outputs made under other settings")
    samples = experiment_samples(exp)
    work: list[tuple[Condition, Sample]] = []
    manifest = []
    for cond in conditions:
        for s in samples:
            path = s.path(out_dir, cond, ext)
            manifest.append((cond, s, path))
            if not path.exists():
                work.append((cond, s))
    bar = tqdm(total=len(work), desc=f"generate {exp.name}", unit=ext, disable=not progress)
    by_method: dict[str, list[tuple[Condition, Sample]]] = {}
    for cond, s in work:
        by_method.setdefault(cond.method, []).append((cond, s))
    size = exp["batch_size"]
    for method, items in by_method.items():
        plan = plans.get(method)
        for start in range(0, len(items), size):
            chunk = items[start: start + size]
            strengths = None if method == "none" else [c.strength for c, _ in chunk]
            batch = [s for _, s in chunk]
            if is_lm:
                model, tok = target
                texts = sample_answers(model, tok, [s.prompt for s in batch], [s.seed for s in batch],
                                       model_name=exp["model"], max_new_tokens=exp["max_new_tokens"],
                                       temperature=exp["temperature"], plan=plan if strengths else None,
                                       strengths=strengths, llm_site=exp["llm_site"],
                                       generated_only=exp["generated_only"], llm_positions=exp["llm_positions"])
                for (cond, s), text in zip(chunk, texts):
                    write_text_atomic(s.path(out_dir, cond, ext), text + "\n")
            else:
                images = generate_images(target, batch, strengths, steps=steps, guidance=guidance,
                                         plan=plan if strengths else None, only_up=exp["only_up"],
                                         cfg_halves=exp.cfg.get("cfg_halves", "conditional"))
                for (cond, s), image in zip(chunk, images):
                    save_png(image, s.path(out_dir, cond, ext))
            bar.update(len(chunk))
    bar.close()
    return manifest


def experiment_plans(exp: Experiment, root: Path, methods: list[str] | None = None) -> dict[str, SteeringPlan]:
    """Fit `methods` (default: every method of the experiment) from the statistics files the cov/vectors
    stages wrote; none for the baseline alone."""
    methods = exp["methods"] if methods is None else [m for m in methods if m != "none"]
    if not methods:
        return {}
    needs_cov = any(get_method(m).needs_neutral for m in methods)
    neutral = load_stats(root / exp.cov_path(), kind="neutral") if needs_cov else None
    source = load_stats(root / exp.vectors_path(exp["source"]), kind="concept")
    target = load_stats(root / exp.vectors_path(exp["target"]), kind="concept") if exp["kind"] == "switch" else None
    return {m: build_plan(m, source, target, neutral, identity_cov=exp["identity_cov"],
                          clip=exp["clip"] or get_method(m).clip_default, renormalize=exp["renormalize"] or None,
                          zero_mu=exp["zero_mu"], regularization=Regularization(**exp["regularize"]))
            for m in methods}


def unit_conditions(exp: Experiment, unit: str, pack: str = "auto") -> list[Condition]:
    """The conditions of one job label (`none-0`, `casteer-2`, or `casteer-all` when packed)."""
    units = exp.job_units(pack)
    if unit not in units:
        raise ConfigError(f"experiment {exp.name} has no job '{unit}' (pack={pack}); jobs: {', '.join(units)}")
    return units[unit]


def sampling(exp: Experiment) -> tuple[int, float]:
    """(steps, guidance) of a diffusion model's run: the preset's, else the model's registry defaults."""
    spec = resolve_spec(exp["model"])
    return exp["steps"] or spec.steps, spec.guidance if exp["guidance"] is None else exp["guidance"]


def generate_unit(exp: Experiment, conditions: list[Condition], out_dir: Path, manifest: Path, *, device: str,
                  root: Path) -> int:
    """The generate stage for one job: load the model once, generate what is missing in the experiment
    folder `out_dir`, write the job's manifest (paths relative to `out_dir`) last. Returns its row count."""
    plans = experiment_plans(exp, root, sorted({c.method for c in conditions}))
    if plans:  # what the maps will do, in the log and next to the vectors, before any output is generated
        print("\n".join(write_plan_diagnostics(exp, root, plans, device=device)), flush=True)
    target = load_model(exp["model"], device=device, dtype=exp.cfg.get("dtype"))
    steps, guidance = sampling(exp)
    rows = run_generation(exp, target, out_dir, plans, steps=steps, guidance=guidance, conditions=conditions)
    write_tsv(manifest, MANIFEST, [(cond.label, cond.method, f"{cond.strength:g}", s.concept, s.index, s.seed, s.prompt,
                                    path.relative_to(out_dir)) for cond, s, path in rows])
    return len(rows)
