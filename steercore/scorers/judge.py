"""LLM judge: a causal LM rates how relevant a text is to a concept on 0–10, read from its next-token
logits over the tokens "0" … "10" (no sampling, no parsing of generated text)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, FileFormatError
from steercore.scorers.common import batched, choose_device
from steercore.hub import TRANSFORMERS_FILES, Download, hub_snapshot

DEFAULT_JUDGE = "meta-llama/Llama-3.1-8B-Instruct"
# Approximate download sizes (bytes): parameters × 2 (bf16 safetensors), see benchmarks/weight_sizes.py.
SIZES = {"meta-llama/Llama-3.1-8B-Instruct": 16_060_000_000, "meta-llama/Llama-3.2-3B-Instruct": 6_430_000_000}


def judge_downloads(model: str | os.PathLike = DEFAULT_JUDGE) -> list[Download]:
    if Path(model).expanduser().is_dir():
        return []
    return [Download(f"LLM judge ({model})", str(model), include=tuple(TRANSFORMERS_FILES), exclude=("original/*",),
                     require=("config.json", "*.safetensors", "tokenizer.*"), size=SIZES.get(str(model)))]
RATINGS = [str(k) for k in range(11)]


def default_template() -> Path:
    return Path(str(resources.files("steercore") / "data" / "judge_prompt.txt"))


def read_template(path: str | os.PathLike | None = None) -> tuple[str, str]:
    """(system text, user text) of a prompt file with '[system]' and '[user]' sections ('#' = comment)."""
    path = Path(path) if path is not None else default_template()
    if not path.is_file():
        raise ConfigError(f"judge prompt file {path} does not exist")
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        if line.strip() in ("[system]", "[user]"):
            current = line.strip()[1:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "user" not in sections or "{answer}" not in "\n".join(sections["user"]):
        raise FileFormatError(f"{path}: needs a [user] section containing {{answer}} (and usually {{concept}})")
    return "\n".join(sections.get("system", [])).strip(), "\n".join(sections["user"]).strip()


class Judge:
    """Relevance rating r ∈ {0, …, 10} of a text to a concept.

    With p = softmax over the logits of the eleven rating tokens at the first answer position,
    `rating` = argmax p (the paper's score) and `expected` = Σ_k k·p_k. Prompts are batched with left
    padding; position ids follow the attention mask, so a text gets the same rating alone or in a batch.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_JUDGE, *, template: str | os.PathLike | None = None,
                 batch_size: int = 8, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 reduce: str = "argmax", progress: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if reduce not in ("argmax", "expected"):
            raise ConfigError(f"judge: reduce must be 'argmax' or 'expected', got {reduce!r}")
        self.name = str(model)
        folder = hub_snapshot(model, what=f"LLM judge ({model})")
        self.device = choose_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        self.system, self.user = read_template(template)
        self.rating_ids = self._rating_token_ids()
        self.batch_size, self.reduce, self.progress = batch_size, reduce, progress

    def _rating_token_ids(self) -> torch.Tensor:
        ids = []
        for r in RATINGS:
            tok = self.tokenizer.encode(r, add_special_tokens=False)
            if len(tok) != 1:
                raise ConfigError(f"judge: '{r}' is {len(tok)} tokens in the tokenizer of {self.name}; "
                                  "the rating needs '0'…'10' to be single tokens (as in Llama 3)")
            ids.append(tok[0])
        return torch.tensor(ids)

    def prompt(self, answer: str, concept: str) -> str:
        """The full prompt text for one answer (chat-templated when the tokenizer has a template)."""
        user = self.user.replace("{concept}", concept).replace("{answer}", answer)
        system = self.system.replace("{concept}", concept)
        if self.tokenizer.chat_template:
            messages = ([{"role": "system", "content": system}] if system else []) + \
                       [{"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return (system + "\n\n" if system else "") + user + "\n"

    @torch.no_grad()
    def probabilities(self, answers: Sequence[str], concept: str) -> torch.Tensor:
        """p [N, 11]: the judge's distribution over the ratings 0…10 for each answer."""
        prompts = [self.prompt(str(a), concept) for a in answers]
        templated = bool(self.tokenizer.chat_template)  # the template already holds BOS
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        out = torch.empty(len(prompts), len(RATINGS))
        ids = self.rating_ids.to(self.device)
        for chunk in batched(order, self.batch_size, f"judge {self.name}", self.progress):
            enc = self.tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                                 add_special_tokens=not templated).to(self.device)
            mask = enc["attention_mask"]  # (B, T), zeros on the left
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                                logits_to_keep=1).logits[:, -1]  # (B, V)
            out[list(chunk)] = torch.softmax(logits[:, ids].float(), dim=-1).cpu()
        return out

    def rate(self, answers: Sequence[str], concept: str) -> tuple[list[int], list[float]]:
        """(argmax rating, expected rating) per answer."""
        p = self.probabilities(answers, concept)
        k = torch.arange(len(RATINGS), dtype=p.dtype)
        return p.argmax(-1).tolist(), (p @ k).tolist()

    def score(self, items: Sequence[str], concept: str) -> list[float]:
        """One rating per answer: the argmax (default, as in the paper) or the expectation."""
        rating, expected = self.rate(items, concept)
        return [float(r) for r in rating] if self.reduce == "argmax" else expected

