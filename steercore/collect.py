"""The cov and vectors stages: run a model over texts and accumulate activation statistics per site.

Diffusion models generate from each text (one seed per text) and every step's cross-attention outputs are
read (conditional half under CFG); language models read one forward pass over the chat-formatted text.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .corpora import split_chat_text
from .experiment import ROOT
from .hooks import collect_statistics
from .stats import ActivationStats


def batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i: i + size]


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


def chat_inputs(tokenizer, texts: list[str], model_name: str, device) -> dict:
    """Tokenize chat-formatted texts with left padding: {input_ids, attention_mask} [B, T]."""
    from .prompting import format_chat

    rendered = []
    for text in texts:
        question, answer = split_chat_text(text)
        rendered.append(format_chat(tokenizer, question, model_name) + (answer or ""))
    if tokenizer.pad_token is None:  # Llama-2 ships none; padded positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def collect_lm(model, tokenizer, texts: list[str], stats: ActivationStats, *, model_name: str, llm_site: str,
               batch_size: int, desc: str = "collect") -> ActivationStats:
    """One forward pass per chat-formatted text; padding is excluded through the attention mask."""
    device = next(model.parameters()).device
    with collect_statistics(model, stats, llm_site=llm_site), torch.no_grad():
        for chunk in tqdm(list(batches(texts, batch_size)), desc=desc, unit="batch"):
            model(**chat_inputs(tokenizer, chunk, model_name, device))
    return stats


def collect_for_experiment(exp, which: str, *, concept: str | None = None, shard: int = 0, shards: int = 1,
                           device: str = "cpu") -> ActivationStats:
    """The cov stage (which='neutral': one shard of the neutral corpus) or the vectors stage
    (which='concept': the mean of one concept's prompts), with the experiment's statistics model."""
    from .corpora import neutral_texts
    from .promptsets import vector_prompts
    from .registry import load_model, resolve_spec

    name = exp.stats_model
    spec = resolve_spec(name)
    if which == "neutral":
        c = exp["cov"]
        texts = neutral_texts(exp.corpus, c["samples"], exp["seed"], shard=shard, shards=shards,
                              root=ROOT)
        stats = ActivationStats("neutral", c["aggregation"],
                                meta={"model": name, "source": exp.corpus, "samples": len(texts),
                                      "shard": f"{shard}/{shards}", "seed": exp["seed"]})
        seed = exp["seed"] + round(shard * c["samples"] / shards)  # text i has seed + i, whatever the sharding
    else:
        texts = vector_prompts(exp, concept)
        stats = ActivationStats("concept", exp["vectors"]["aggregation"],
                                meta={"model": name, "source": "prompts", "concept": concept, "samples": len(texts),
                                      "seed": exp["seed"]})
        seed = exp["seed"]
    target = load_model(name, device=device)
    desc = f"{which} {concept or exp.corpus} {shard + 1}/{shards}" if which == "neutral" else f"vectors {concept}"
    if spec.kind == "lm":
        model, tok = target
        return collect_lm(model, tok, texts, stats, model_name=name, llm_site=exp["llm_site"],
                          batch_size=exp["batch_size"], desc=desc)
    steps = exp["steps"] if exp["stats_model"] is None and exp["steps"] else spec.steps
    guidance = exp["guidance"] if exp["stats_model"] is None and exp["guidance"] is not None else spec.guidance
    return collect_t2i(target, texts, stats, steps=steps, guidance=guidance, batch_size=exp["batch_size"],
                       seed=seed, per_step=exp["cov"]["per_step"], desc=desc)
