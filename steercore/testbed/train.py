"""Training entry points for the testbed models (t2i, lm, clip): fixed seeds, tqdm progress, safetensors output.

Each writer stamps its weights with the command, seed, steps and git commit: in `testbed_meta.json` beside
them and in the metadata of every `.safetensors` file it wrote.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from steercore.core.errors import ConfigError
from steercore.testbed import shapes

META_FILE = "testbed_meta.json"


def git_commit() -> str:
    """HEAD of the repository this package lives in, '+dirty' if the testbed code differs; 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        # Only the testbed's own code decides what the weights are; edits elsewhere in the tree do not count.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "steercore/testbed",
                                "workflow_scripts/train_testbed.py"], cwd=root, capture_output=True,
                               text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_metadata(folder: Path, meta: dict) -> None:
    """testbed_meta.json in `folder`, and the same keys (as strings) in every .safetensors file below it."""
    folder = Path(folder)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    for path in folder.rglob("*.safetensors"):
        tensors = load_file(path)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, tmp, metadata={"format": "pt", **flat})
        tmp.replace(path)


def _start() -> tuple[float, str]:
    """Wall-clock start and the commit of the code that trains (taken now, not when the weights are saved)."""
    return time.time(), git_commit()


def _metadata(model: str, seed: int, steps: int, extra: dict, started: tuple[float, str]) -> dict:
    return {"model": model, "command": " ".join(sys.argv), "seed": seed, "steps": steps,
            "git_commit": started[1], "train_seconds": round(time.time() - started[0], 1),
            "torch": torch.__version__, **extra}


def _staging(out: Path) -> Path:
    """An empty `<out>.tmp` folder to build a model in before `_publish` moves it onto `out`."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def _log_and_check_time(bar, losses: list, step: int, every: int, started, max_seconds: float | None) -> bool:
    """Show the running loss every `every` steps; True once the wall-time budget is spent (stop training)."""
    if step % every == 0:
        bar.set_postfix(loss=f"{np.mean(losses[-every:]):.4f}")
    return max_seconds is not None and time.time() - started[0] > max_seconds


def _publish(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished folder `tmp` (a reader never sees a half-written model)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


class EMA:
    """Exponential moving average of a module's parameters, with the usual warm-up of the decay."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p, 1 - d)


def _lr_lambda(warmup: int, steps: int | None):
    """Linear warm-up, then cosine decay to 10% of the peak; constant after warm-up if `steps` is None."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if steps is None:
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def train_t2i(out: str | Path, steps: int = 5000, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
              warmup: int = 200, ema_decay: float = 0.999, cond_dropout: float = 0.1, min_snr_gamma: float = 5.0,
              max_seconds: float | None = None, checkpoint_every: int = 500, checkpoint_dir: str | Path | None = None,
              progress: bool = True) -> dict:
    """Train testbed-t2i (ε-prediction, min-SNR-γ weighting, EMA) on shapes-world captions; save a diffusers
    folder at `out`. Returns {"losses": [...], "steps": n} (steps may be fewer if `max_seconds` ran out).

    The learning rate is constant after warm-up, so the checkpoint at step k (in `checkpoint_dir`/step{k}) is
    exactly what a run with `steps=k` produces."""
    from steercore.testbed.t2i import build_pipeline, build_training_scheduler, images_to_latents

    started = _start()
    out = Path(out)
    pipe = build_pipeline(seed)
    unet, text_encoder, tokenizer = pipe.unet.train(), pipe.text_encoder.train(), pipe.tokenizer
    noise_sched = build_training_scheduler()
    alphas = noise_sched.alphas_cumprod  # (1000,)
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=min_snr_gamma) / snr  # min-SNR-γ for ε-prediction (Hang et al. 2023)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, None))
    ema_unet, ema_text = EMA(unet, ema_decay), EMA(text_encoder, ema_decay)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(steps), desc="train testbed-t2i", disable=not progress)
    for step in bar:
        images, _, captions = shapes.training_batch(rng, batch_size)
        captions = ["" if rng.random() < cond_dropout else c for c in captions]
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        x0 = images_to_latents(images)  # (B, 12, 16, 16)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch_size,), generator=gen)
        xt = noise_sched.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        loss = (weight[t] * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema_unet.update(unet)
        ema_text.update(text_encoder)
        losses.append(loss.item())
        if checkpoint_dir and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _save_t2i(pipe, ema_unet, ema_text, Path(checkpoint_dir) / f"step{step + 1}",
                      _metadata("testbed-t2i", seed, step + 1, {"checkpoint_of": str(out)}, started))
        if _log_and_check_time(bar, losses, step, 50, started, max_seconds):
            break
    done = len(losses)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_t2i(pipe, ema_unet, ema_text, out, _metadata(
        "testbed-t2i", seed, done, {"batch_size": batch_size, "lr": lr, "ema_decay": ema_decay,
                                    "final_loss_ema50": float(np.mean(losses[-50:]))}, started))
    return {"losses": losses, "steps": done}


def _save_t2i(pipe, ema_unet: EMA, ema_text: EMA, out: Path, meta: dict) -> None:
    from steercore.testbed.t2i import ShapesPipeline

    final = ShapesPipeline(unet=ema_unet.shadow, text_encoder=ema_text.shadow, tokenizer=pipe.tokenizer,
                           scheduler=pipe.scheduler)
    tmp = _staging(out)
    final.save_pretrained(tmp, safe_serialization=True)
    write_metadata(tmp, meta)
    _publish(tmp, out)


CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 10, "vocab_size": None, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 2.0,
                 "pool_type": "eos", "eos_id": None, "pad_id": None, "hf_tokenizer_name": "testbed-word-level"},
}
CLIP_PREPROCESS = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                   "resize_mode": "shortest"}


def _clip_texts(scenes: list, rng: np.random.Generator) -> list[str]:
    """One text per scene: a full caption, 'colour shape', or a single colour or shape word."""
    texts = []
    for s in scenes:
        kind = rng.integers(5)
        texts.append([s.caption(rng), f"{s.colour} {s.shape}", s.colour, s.shape, f"a {s.colour} {s.shape}"][kind])
    return texts


def _clip_match(scenes: list, texts: list[str]) -> torch.Tensor:
    """M[i, j] = 1 if text j is true of scene i (every attribute it states holds), [N, N]."""
    facts = [{"colour": s.colour, "shape": s.shape, "size": s.size_word, "side": s.side_word} for s in scenes]
    claims = [shapes.caption_attributes(t) for t in texts]
    return torch.tensor([[float(all(f.get(k) == v for k, v in c.items())) for c in claims] for f in facts])


def augment_images(scenes: list, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
    """Renders with tinted, graded, noisy backgrounds, dimmed/brightened shapes and some blur, [N, 3, 32, 32]
    in [-1, 1]; what a generator's imperfect output looks like, so the scorer is robust to it."""
    n = len(scenes)
    cover = shapes.shape_coverage(scenes)[:, None]  # (N, 1, H, W)
    rgb = torch.tensor([s.rgb for s in scenes], dtype=torch.float32)[:, :, None, None]
    rgb = (rgb * torch.empty(n, 1, 1, 1).uniform_(0.7, 1.1, generator=gen)).clamp(0, 1)
    # grey level up to 0.35 (a generator's background drifts lighter than the world's ≤ 0.12) plus a tint
    tint = torch.empty(n, 1, 1, 1).uniform_(0.0, 0.35, generator=gen) + torch.empty(n, 3, 1, 1).uniform_(
        0.0, 0.12, generator=gen)
    ramp = torch.linspace(-1, 1, shapes.IMAGE_SIZE)
    direction = torch.empty(n, 2).uniform_(-0.08, 0.08, generator=gen)
    grade = direction[:, 0, None, None] * ramp[None, :, None] + direction[:, 1, None, None] * ramp[None, None, :]
    bg = (tint + grade[:, None]).clamp(0, 1)
    img = cover * rgb + (1 - cover) * bg
    sigma = torch.empty(n, 1, 1, 1).uniform_(0.0, 0.15, generator=gen)
    img = img + sigma * torch.randn(img.shape, generator=gen)
    blur = torch.rand(n, generator=gen) < 0.4
    if blur.any():
        img[blur] = F.avg_pool2d(F.pad(img[blur], (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return img.clamp(0, 1) * 2 - 1


def clip_config(tokenizer) -> dict:
    cfg = json.loads(json.dumps(CLIP_CONFIG))
    cfg["text_cfg"].update(vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    return cfg


def train_clip(out: str | Path, steps: int = 1000, batch_size: int = 96, lr: float = 2e-3, seed: int = 0,
               warmup: int = 100, max_seconds: float | None = None, progress: bool = True) -> dict:
    """Train the testbed open_clip model contrastively on shapes-world image/text pairs (multi-positive soft
    targets: a text is a positive of every image it is true of); save it as an open_clip `local-dir:` folder."""
    from open_clip import CLIP

    from steercore.testbed.t2i import build_tokenizer

    started = _start()
    out = Path(out)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    cfg = clip_config(tokenizer)
    model = CLIP(**cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, steps))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(steps), desc="train testbed-clip", disable=not progress)
    for step in bar:
        scenes = [shapes.sample_scene(rng) for _ in range(batch_size)]
        clean = rng.random(batch_size) < 0.3
        images = torch.where(torch.as_tensor(clean)[:, None, None, None], shapes.render(scenes),
                             augment_images(scenes, rng, gen))
        images = (images + 1) / 2  # CLIP preprocessing: [0, 1], then mean/std 0.5
        images = (images - 0.5) / 0.5
        texts = _clip_texts(scenes, rng)
        ids = tokenizer(texts, padding="max_length", max_length=cfg["text_cfg"]["context_length"],
                        truncation=True, return_tensors="pt").input_ids
        match = _clip_match(scenes, texts)  # (B, B)
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(ids), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T  # (B, B)
        loss = 0.5 * (torch.sum(-match / match.sum(1, keepdim=True) * logits.log_softmax(1), 1).mean()
                      + torch.sum(-match.T / match.T.sum(1, keepdim=True) * logits.T.log_softmax(1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if _log_and_check_time(bar, losses, step, 20, started, max_seconds):
            break
    tmp = _staging(out)
    tmp.mkdir(parents=True)
    config = {"model_cfg": cfg, "preprocess_cfg": CLIP_PREPROCESS}
    (tmp / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "open_clip_model.safetensors")
    tokenizer.save_pretrained(tmp)
    write_metadata(tmp, _metadata("testbed-clip", seed, len(losses), {"batch_size": batch_size, "lr": lr,
                                  "final_loss_ema20": float(np.mean(losses[-20:]))}, started))
    _publish(tmp, out)
    return {"losses": losses, "steps": len(losses)}


def train_lm(out: str | Path, steps: int = 1500, batch_size: int = 48, lr: float = 3e-3, seed: int = 0,
             warmup: int = 100, max_seconds: float | None = None, progress: bool = True) -> dict:
    """Train testbed-lm (next-token loss on the assistant turn only) on topics-world dialogues; save a
    transformers folder (LlamaForCausalLM + tokenizer with chat template) at `out`."""
    from steercore.testbed import topics
    from steercore.testbed.lm import build_model, build_tokenizer, training_text

    started = _start()
    out = Path(out)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, steps))
    rng = np.random.default_rng(seed)
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    losses = []
    bar = tqdm(range(steps), desc="train testbed-lm", disable=not progress)
    for step in bar:
        texts = [training_text(tokenizer, q, a) for q, a, _ in (topics.dialogue(rng) for _ in range(batch_size))]
        enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        ids, mask = enc.input_ids, enc.attention_mask  # (B, T), left-padded
        # Loss only on the answer: tokens after the <|assistant|> marker (the </s> included).
        after = (ids == assistant).int().cumsum(1) - (ids == assistant).int()
        labels = ids.masked_fill((after == 0) | (mask == 0), -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if _log_and_check_time(bar, losses, step, 20, started, max_seconds):
            break
    tmp = _staging(out)
    model.eval().save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_metadata(tmp, _metadata("testbed-lm", seed, len(losses), {"batch_size": batch_size, "lr": lr,
                                  "final_loss_ema20": float(np.mean(losses[-20:]))}, started))
    _publish(tmp, out)
    return {"losses": losses, "steps": len(losses)}


TRAINERS = {"t2i": train_t2i, "clip": train_clip, "lm": train_lm}
#: Steps of the shipped runs (what `workflow_scripts/train_testbed.py` uses by default).
DEFAULT_STEPS = {"t2i": 6000, "clip": 1000, "lm": 1500}


def train(model: str, out: str | Path, **kwargs) -> dict:
    """Train one testbed model by name ('t2i', 'lm' or 'clip') into the folder `out`."""
    if model not in TRAINERS:
        raise ConfigError(f"testbed model {model!r} is unknown; use one of {', '.join(TRAINERS)}")
    return TRAINERS[model](out, **kwargs)
