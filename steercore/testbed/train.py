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

from ..errors import ConfigError
from . import shapes

META_FILE = "testbed_meta.json"


def git_commit() -> str:
    """HEAD of the repository this package lives in, '+dirty' if the working tree differs; 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "steercore"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
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


def _metadata(model: str, seed: int, steps: int, extra: dict, started: float) -> dict:
    return {"model": model, "command": " ".join(sys.argv), "seed": seed, "steps": steps,
            "git_commit": git_commit(), "train_seconds": round(time.time() - started, 1),
            "torch": torch.__version__, **extra}


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


def _lr_lambda(warmup: int, steps: int):
    """Linear warm-up, then cosine decay to 10% of the peak."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def train_t2i(out: str | Path, steps: int = 5000, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
              warmup: int = 200, ema_decay: float = 0.999, cond_dropout: float = 0.1, min_snr_gamma: float = 5.0,
              max_seconds: float | None = None, checkpoint_every: int = 1000, progress: bool = True) -> dict:
    """Train testbed-t2i (ε-prediction, min-SNR-γ weighting, EMA) on shapes-world captions; save a diffusers
    folder at `out`. Returns {"losses": [...], "steps": n} (steps may be fewer if `max_seconds` ran out)."""
    from .t2i import build_pipeline, build_training_scheduler, images_to_latents

    started = time.time()
    out = Path(out)
    pipe = build_pipeline(seed)
    unet, text_encoder, tokenizer = pipe.unet.train(), pipe.text_encoder.train(), pipe.tokenizer
    noise_sched = build_training_scheduler()
    alphas = noise_sched.alphas_cumprod  # (1000,)
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=min_snr_gamma) / snr  # min-SNR-γ for ε-prediction (Hang et al. 2023)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, steps))
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
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _save_t2i(pipe, ema_unet, ema_text, out.with_name(f"{out.name}.step{step + 1}"),
                      _metadata("testbed-t2i", seed, step + 1, {"checkpoint": True}, started))
        if max_seconds is not None and time.time() - started > max_seconds:
            break
    done = len(losses)
    _save_t2i(pipe, ema_unet, ema_text, out, _metadata(
        "testbed-t2i", seed, done, {"batch_size": batch_size, "lr": lr, "ema_decay": ema_decay,
                                    "final_loss_ema50": float(np.mean(losses[-50:]))}, started))
    return {"losses": losses, "steps": done}


def _save_t2i(pipe, ema_unet: EMA, ema_text: EMA, out: Path, meta: dict) -> None:
    from .t2i import ShapesPipeline

    final = ShapesPipeline(unet=ema_unet.shadow, text_encoder=ema_text.shadow, tokenizer=pipe.tokenizer,
                           scheduler=pipe.scheduler)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    final.save_pretrained(tmp, safe_serialization=True)
    write_metadata(tmp, meta)
    _publish(tmp, out)


TRAINERS = {"t2i": train_t2i}
#: Steps of the shipped runs (what `workflow_scripts/train_testbed.py` uses by default).
DEFAULT_STEPS = {"t2i": 6000}


def train(model: str, out: str | Path, **kwargs) -> dict:
    """Train one testbed model by name ('t2i', 'lm' or 'clip') into the folder `out`."""
    if model not in TRAINERS:
        raise ConfigError(f"testbed model {model!r} is unknown; use one of {', '.join(TRAINERS)}")
    return TRAINERS[model](out, **kwargs)
