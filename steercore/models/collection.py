"""Run a model over texts and accumulate activation statistics per site (the work of the cov and vectors stages).

Diffusion models generate from each text (one seed per text) and every step's cross-attention outputs are
read (conditional half under CFG); language models read one forward pass over the chat-formatted text.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from steercore.core.stats import ActivationStats
from steercore.models.hooks import collect_statistics
from steercore.models.prompting import encode_chat


def collect_t2i(pipe, texts: list[str], stats: ActivationStats, *, steps: int, guidance: float, batch_size: int,
                seed: int, per_step: bool = True, desc: str = "collect") -> ActivationStats:
    """Generate once from each text (seed + its index) and fold every step's activations into `stats`.

    per_step=False keeps step 0 only, which then serves every step when steering."""
    device = getattr(pipe, "device", torch.device("cpu"))
    bar = tqdm(total=len(texts), desc=desc, unit="prompt")
    with collect_statistics(pipe, stats):
        for start in range(0, len(texts), batch_size):
            chunk = texts[start: start + batch_size]
            gens = [torch.Generator(device).manual_seed(seed + start + i) for i in range(len(chunk))]
            pipe(prompt=chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                 output_type="latent")
            bar.update(len(chunk))
    bar.close()
    if not per_step:
        for key in [k for k in stats.moments if k[0] != 0]:
            del stats.moments[key]
    return stats


def collect_lm(model, tokenizer, texts: list[str], stats: ActivationStats, *, model_name: str, llm_site: str,
               batch_size: int, desc: str = "collect") -> ActivationStats:
    """One forward pass per chat-formatted text; padding is excluded through the attention mask."""
    device = next(model.parameters()).device
    with collect_statistics(model, stats, llm_site=llm_site), torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch"):
            model(**encode_chat(tokenizer, texts[start: start + batch_size], model_name, device))
    return stats
