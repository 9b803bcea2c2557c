"""Chat prompt formats for the LLMs: Llama-2-chat by hand (as the reference did), others by their template;
corpus items that carry a reference answer (question + assistant turn) are encoded the same way."""

from __future__ import annotations

import json

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


def chat_record(question: str, answer: str | None) -> str:
    """A corpus item with a reference answer, as one text line (read back by `split_chat_text`)."""
    return json.dumps({"question": question, "answer": answer or ""})


def split_chat_text(text: str) -> tuple[str, str | None]:
    """(question, answer) of a `chat_record`, else (text, None)."""
    if text.startswith("{"):
        try:
            rec = json.loads(text)
            return rec["question"], rec.get("answer")
        except (ValueError, KeyError, TypeError):
            pass
    return text, None


def encode_chat(tokenizer, texts: list[str], model_name: str, device=None) -> dict[str, torch.Tensor]:
    """A left-padded batch {input_ids, attention_mask} [B, T] of chat prompts, ready for `model.generate`;
    a `chat_record` text is followed by its reference answer (the assistant turn)."""
    rendered = []
    for text in texts:
        question, answer = split_chat_text(text)
        rendered.append(format_chat(tokenizer, question, model_name) + (answer or ""))
    if tokenizer.pad_token is None:  # Llama-2 ships none; padded positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues at the right end of every row
    try:
        batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) if device is not None else v for k, v in batch.items()
            if k in ("input_ids", "attention_mask")}
