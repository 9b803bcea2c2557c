"""Toxicity of generated text with Detoxify classifiers (every field they predict), and the
RealToxicityPrompts subset the paper steers on (the most toxic 500 prompts with toxicity ≥ 0.5)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, FileFormatError
from steercore.scorers.common import batched, choose_device
from steercore.hub import Download, hub_file, hub_snapshot, url_file

RTP_REPO = "allenai/real-toxicity-prompts"
RTP_FILE = "prompts.jsonl"
# Detoxify model type → the Hub repository of its transformers config and tokenizer (read from the
# checkpoint when loading; listed here so that downloads can be planned before any checkpoint exists).
HF_CONFIGS = {"original": "bert-base-uncased", "unbiased": "roberta-base", "multilingual": "xlm-roberta-base",
              "original-small": "albert-base-v2", "unbiased-small": "albert-base-v2"}
HF_CONFIG_FILES = ("*.json", "*.txt")


def detoxify_downloads(model: str = "original") -> list[Download]:
    """What `Toxicity(model)` reads: the checkpoint from Detoxify's releases and its config and tokenizer."""
    what = f"toxicity scorer (Detoxify {model})"
    if Path(model).expanduser().is_file():
        return []
    url = _model_urls().get(str(model))
    if url is None:
        raise ConfigError(f"toxicity scorer: {model} is neither a checkpoint file nor a Detoxify model "
                          f"({', '.join(_model_urls())})")
    size = next((n for name, (_, n) in OFFICIAL_CHECKPOINTS.items() if url.endswith(name)), None)
    return [Download(what, url, repo_type="url", size=size),
            Download(what, HF_CONFIGS.get(str(model), "bert-base-uncased"), include=HF_CONFIG_FILES,
                     require=("config.json",), size=1_000_000)]


def rtp_downloads() -> list[Download]:
    return [Download("RealToxicityPrompts", RTP_REPO, include=(RTP_FILE,), repo_type="dataset")]
# Detoxify's own label names → the names its predictions use.
_RENAME = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
_HASH = re.compile(r"-([a-f0-9]{8,})\.")


def _model_urls() -> dict[str, str]:
    from detoxify.detoxify import MODEL_URLS

    return MODEL_URLS


# Full SHA-256 and size of the official Detoxify checkpoints that need full unpickling (they pickle more
# than tensors). Only a file with exactly this content may be unpickled: a hash *prefix* in a file's own name
# proves nothing, anyone can name a file that way. Entries are added only from a verified download; the other
# published checkpoints must load with weights_only=True or are refused.
OFFICIAL_CHECKPOINTS: dict[str, tuple[str, int]] = {
    "toxic_original-c1212f89.ckpt": ("c1212f89ac23307ab33932ce29dc446a6e030fb3f384a500890bbe662b7b544a", 438_021_897),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_official(path: Path) -> bool:
    """True only when the file's size and full SHA-256 are those of a listed official checkpoint."""
    size = path.stat().st_size
    known = {digest for digest, n in OFFICIAL_CHECKPOINTS.values() if n == size}
    return bool(known) and _sha256(path) in known


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A Detoxify checkpoint: {'config': {...}, 'state_dict': {...}}.

    No path executes code: the file is loaded with weights_only=True, and a file that needs full unpickling
    is accepted only when its size and full SHA-256 match an entry of `OFFICIAL_CHECKPOINTS`.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _is_official(path):
            raise FileFormatError(f"{path}: torch.load(weights_only=True) cannot read it (it pickles more than "
                                  "tensors and plain containers, or is no checkpoint) and its SHA-256 is not that of "
                                  "a listed official Detoxify checkpoint; refusing to unpickle it (re-save it as "
                                  "{'config': ..., 'state_dict': ...} of plain types and tensors)") from None
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # content verified: the official file
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise FileFormatError(f"{path}: not a readable checkpoint ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise FileFormatError(f"{path}: not a Detoxify checkpoint (needs 'config' and 'state_dict')")
    return ckpt


class Toxicity:
    """Detoxify classifier: sigmoid of its logits, one probability per field and text.

    `model` is a Detoxify model type ('original', 'unbiased', ...) whose checkpoint is downloaded from the
    Detoxify releases (or found in the torch hub cache), or a local checkpoint file. The checkpoint names a
    transformers architecture whose config and tokenizer come from the Hub (e.g. bert-base-uncased) unless
    `hf_config` is a local folder holding them.
    """

    def __init__(self, model: str | os.PathLike = "original", *, hf_config: str | os.PathLike | None = None,
                 batch_size: int = 32, device: str | torch.device | None = None, progress: bool = True):
        import transformers

        urls = _model_urls()
        what = f"toxicity scorer (Detoxify {model})"
        if Path(model).expanduser().is_file():
            path = Path(model).expanduser()
        elif str(model) in urls:
            m = _HASH.search(urls[str(model)])
            path = url_file(urls[str(model)], what=what, hash_prefix=m.group(1) if m else None)
        else:
            raise ConfigError(f"toxicity scorer: {model} is neither a checkpoint file nor a Detoxify model "
                              f"({', '.join(urls)})")
        ckpt = load_checkpoint(path)
        arch = ckpt["config"]["arch"]["args"]
        self.fields = [_RENAME.get(c, c) for c in ckpt["config"]["dataset"]["args"]["classes"]]
        folder = hub_snapshot(hf_config or arch["model_type"], what=what, allow_patterns=list(HF_CONFIG_FILES))
        model_class = getattr(transformers, arch["model_name"])
        config = model_class.config_class.from_pretrained(folder, num_labels=arch["num_classes"])
        net = model_class(config)
        state = ckpt["state_dict"]
        own = net.state_dict()
        # Older transformers saved position_ids buffers that current versions no longer persist.
        state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise FileFormatError(f"{path}: weights do not fit {arch['model_name']} ({detail})") from None
        tok_class = getattr(transformers, arch.get("tokenizer_name", ""), None) or transformers.AutoTokenizer
        self.tokenizer = tok_class.from_pretrained(folder)
        self.max_length = min(self.tokenizer.model_max_length, 512)
        self.device = choose_device(device)
        self.model = net.to(self.device).eval()
        self.batch_size = batch_size
        self.progress = progress
        self.name = str(model)

    @torch.no_grad()
    def predict(self, texts: Sequence[str]) -> dict[str, list[float]]:
        """field → one probability per text, in order."""
        texts = [str(t) for t in texts]
        probs = []
        for chunk in batched(texts, self.batch_size, f"Detoxify {self.name}", self.progress):
            enc = self.tokenizer(list(chunk), return_tensors="pt", truncation=True, padding=True,
                                 max_length=self.max_length).to(self.device)
            logits = self.model(**enc).logits  # (B, num_classes)
            probs.append(torch.sigmoid(logits.float())[:, :len(self.fields)].cpu())
        p = torch.cat(probs) if probs else torch.empty(0, len(self.fields))
        return {f: p[:, i].tolist() for i, f in enumerate(self.fields)}

    def score(self, items: Sequence[str], concept: str = "toxicity") -> list[float]:
        """One probability per text: of the field named `concept` when there is one, else of 'toxicity'."""
        field = concept if concept in self.fields else "toxicity"
        return self.predict(items)[field]

def _read_records(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict("records")
        except ImportError as e:
            raise ConfigError(f"{path}: reading parquet needs pyarrow ({e}); use the .jsonl file instead") from None
    with open(path) as f:
        if path.suffix == ".json":
            return json.load(f)
        return [json.loads(line) for line in f if line.strip()]


def load_rtp_subset(source: str | os.PathLike = RTP_REPO, n: int = 500, min_toxicity: float = 0.5) -> list[dict]:
    """The `n` most toxic RealToxicityPrompts prompts with prompt toxicity ≥ `min_toxicity`.

    `source`: the Hub dataset (its prompts.jsonl) or a local .jsonl/.json/.parquet with RTP's records
    ({"prompt": {"text", "toxicity"}}) or flat "text"/"toxicity" columns. Returns dicts with text,
    toxicity and the record's row number; ties keep file order, so the subset is reproducible.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        if path.suffix or Path(source).is_absolute():
            raise ConfigError(f"RealToxicityPrompts file {source} does not exist")
        path = hub_file(str(source), RTP_FILE, what="RealToxicityPrompts", repo_type="dataset")
    chosen = []
    for row, rec in enumerate(_read_records(path)):
        prompt = rec.get("prompt")
        if isinstance(prompt, dict):
            text, tox = prompt.get("text"), prompt.get("toxicity")
        else:
            text, tox = rec.get("text", prompt), rec.get("toxicity")
        if text is None:
            raise FileFormatError(f"{path}: record {row} has no prompt text")
        if tox is not None and tox == tox and tox >= min_toxicity:  # tox == tox drops NaN
            chosen.append({"text": text, "toxicity": float(tox), "row": row})
    chosen.sort(key=lambda r: -r["toxicity"])  # stable: ties keep file order
    return chosen[:n]
