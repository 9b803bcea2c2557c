"""Chat prompt formats for the LLMs: Llama-2-chat by hand (as the reference did), others by their template."""

from __future__ import annotations

import torch


def is_llama2_chat(model_name: str) -> bool:
    name = model_name.lower().replace("_", "-")
    return ("llama-2" in name or "llama2" in name) and "chat" in name


def format_chat(tokenizer, question: str, model_name: str) -> str:
    """The prompt text for one user question, ending where the assistant's answer starts.

    Llama-2-chat: `<s>[INST] question [/INST] ` built by hand (its tokenizer has no reliable template).
    Others: `apply_chat_template(add_generation_prompt=True)`; a tokenizer without a template gets BOS + question.
    The text already holds any BOS token, so tokenize it with `add_special_tokens=False` (see `encode_chat`).
    """
    bos = tokenizer.bos_token or ""
    if is_llama2_chat(model_name):
        return f"{bos}[INST] {question.strip()} [/INST] "
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return bos + question


def encode_chat(tokenizer, questions: list[str], model_name: str, device=None) -> dict[str, torch.Tensor]:
    """A left-padded batch (input_ids, attention_mask) of chat prompts, ready for `model.generate`."""
    texts = [format_chat(tokenizer, q, model_name) for q in questions]
    if tokenizer.pad_token is None:  # Llama-2 ships none; padded positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues at the right end of every row
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) if device is not None else v for k, v in batch.items()}
