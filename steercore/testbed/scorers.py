"""Testbed scorers with the interface of the real ones: a CLIP-style image concept scorer and a topic scorer.

`TestbedImageScorer` is an `open_clip` model (own small config, trained on shapes-world pairs) loaded offline
through open_clip's `local-dir:` schema, so it runs the same code path as a real CLIP scorer.
`TopicScorer` is exact: it counts topic vocabulary in the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.testbed import topics as topics_world

WEIGHTS = Path(__file__).resolve().parent / "weights"
CLIP_SCORE_W = 2.5  # CLIP-score weight w (Hessel et al.), as in the real scorer


class TestbedImageScorer:
    """Zero-shot concept scores of images: `max(0, w·cos(image, text))` with w = 2.5 and text = the concept word.

    The model is the testbed open_clip model in `folder` (open_clip_config.json, open_clip_model.safetensors and
    a word-level tokenizer), loaded with `open_clip.create_model_and_transforms("local-dir:<folder>")`.
    """

    __test__ = False  # not a pytest class despite its name

    def __init__(self, folder: str | Path | None = None, device: str = "cpu", batch_size: int = 256):
        import open_clip

        folder = Path(folder) if folder is not None else WEIGHTS / "clip"
        if not (folder / "open_clip_config.json").is_file():
            raise MissingWeightsError(f"testbed CLIP weights are missing in {folder}; run "
                                      f"workflow_scripts/train_testbed.py clip --out {folder}")
        name = f"local-dir:{folder}"
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, device=device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings [N, d] (also the feature extractor for FID on the testbed)."""
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + self.batch_size]])
            out.append(F.normalize(self.model.encode_image(batch.to(self.device)).float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.model.visual.output_dim)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings [N, d]."""
        return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)

    def score(self, images: list[Image.Image], concept: str) -> list[float]:
        """Per image max(0, 2.5·cos(image, concept)), as the CLIP score."""
        cos = self.features(images) @ self.text_features([concept])[0]  # (N,)
        return (CLIP_SCORE_W * cos).clamp(min=0).tolist()

    def classify(self, images: list[Image.Image], labels: list[str]) -> list[str]:
        """Zero-shot: for each image the label whose text embedding is closest."""
        sims = self.features(images) @ self.text_features(labels).T  # (N, L)
        return [labels[i] for i in sims.argmax(dim=1).tolist()]


_WORD = re.compile(r"[a-z]+")


class TopicScorer:
    """Topic relevance of texts on a 0–10 scale, exact and vocabulary-based.

    score(text, topic) = 10 · (content words of the text that are in the topic's vocabulary) / (content words),
    where words are lower-cased [a-z]+ runs and content words are those not in `topics.FUNCTION_WORDS`
    (0 if the text has no content words). `classify` picks the topic with the highest score (first on ties).
    """

    def __init__(self, vocabularies: dict[str, frozenset[str]] | None = None):
        self.vocabularies = vocabularies or topics_world.TOPIC_VOCABULARY

    def content_words(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(text.lower()) if w not in topics_world.FUNCTION_WORDS]

    def _vocabulary(self, topic: str) -> frozenset[str]:
        if topic not in self.vocabularies:
            raise ConfigError(f"topic {topic!r} is unknown; use one of {', '.join(self.vocabularies)}")
        return self.vocabularies[topic]

    def score(self, texts: list[str], concept: str) -> list[float]:
        vocab = self._vocabulary(concept)
        out = []
        for text in texts:
            words = self.content_words(text)
            out.append(10.0 * sum(w in vocab for w in words) / len(words) if words else 0.0)
        return out

    def classify(self, texts: list[str], topics: list[str]) -> list[str]:
        scores = torch.tensor([self.score(texts, t) for t in topics])  # (T, N)
        return [topics[i] for i in scores.argmax(dim=0).tolist()]
