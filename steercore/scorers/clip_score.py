"""CLIP concept score (Hessel et al.'s CLIPScore with w = 2.5) with open_clip: how much each image shows a
concept, and whether it matches the concept better than competing prompts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.scorers.common import batched, choose_device, load_image
from steercore.hub import Download, hub_file, hub_snapshot, url_file

_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_CONFIG_FILE = "open_clip_config.json"
# Approximate download sizes (bytes) of the default model's files: ViT-B-32, 151.3M float32 parameters.
SIZES = {("ViT-B-32", "openai"): 605_000_000}


def clip_downloads(model: str = "ViT-B-32", pretrained: str = "openai") -> list[Download]:
    """What `ClipScorer(model, pretrained)` reads from the Hub or a URL (nothing for local files)."""
    import open_clip

    if Path(str(model)).expanduser().is_dir() or str(model).startswith("local-dir:") or \
            (pretrained is not None and Path(str(pretrained)).expanduser().is_file()):
        return []
    what = f"CLIP scorer ({model}, {pretrained})"
    if str(model).startswith("hf-hub:"):
        return [Download(what, str(model)[len("hf-hub:"):])]
    cfg = open_clip.get_pretrained_cfg(model, str(pretrained)) or {}
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        return [Download(what, repo, include=(_CONFIG_FILE, filename or _WEIGHT_FILES[0]),
                         size=SIZES.get((model, pretrained)))]
    return [Download(what, cfg["url"], repo_type="url")] if cfg.get("url") else []


def _tag_checkpoint(model: str, tag: str) -> tuple[str, dict]:
    """(local checkpoint path, pretrained config) for an open_clip pretrained tag such as 'openai'."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ConfigError(f"CLIP scorer: '{tag}' is neither a file nor a pretrained tag of {model} "
                          f"(tags: {tags})")
    what = f"CLIP scorer ({model}, {tag})"
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # 'org/repo/' means open_clip's default file names
        names = [filename] if filename else list(_WEIGHT_FILES)
        last = None
        for name in names:  # safetensors first, like open_clip; a missing one costs no network when cached
            try:
                path = hub_file(repo, name, what=what)
            except MissingWeightsError as e:
                last = last or e
                continue
            try:  # the repository's own architecture config, as open_clip's hf-hub: loading reads it
                hub_file(repo, _CONFIG_FILE, what=what)
            except MissingWeightsError:
                pass
            return str(path), cfg
        raise last
    return str(url_file(cfg["url"], what=what)), cfg


def load_clip(model: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai",
              device: torch.device | str = "cpu", precision: str = "fp32"):
    """(model, image preprocessing, tokenizer), in eval mode on `device`.

    `model` is an open_clip architecture name, a local open_clip model folder (open_clip_config.json +
    weights) or 'hf-hub:org/repo'. `pretrained` is a tag of that architecture, a checkpoint file, or None
    for random weights (tests). A folder or hub model brings its own weights and ignores `pretrained`.
    """
    import open_clip

    kwargs = {}
    name = str(model)
    if name.startswith("hf-hub:"):
        folder = hub_snapshot(name[len("hf-hub:"):], what="CLIP scorer", allow_patterns=None)
        name, pretrained = f"local-dir:{folder}", None
    elif Path(name).expanduser().is_dir():
        name, pretrained = f"local-dir:{Path(name).expanduser()}", None
    elif name.startswith("local-dir:"):
        pretrained = None
    if pretrained is not None and not Path(pretrained).expanduser().is_file():
        pretrained, cfg = _tag_checkpoint(name, str(pretrained))
        # What open_clip would apply for the tag itself; we pass a file path, so say it explicitly.
        kwargs["force_quick_gelu"] = bool(cfg.get("quick_gelu", False))
        # (create_model_and_transforms takes these as image_* arguments; a force_preprocess_cfg keyword
        # collides with the one it builds from them)
        kwargs.update({f"image_{k}": cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg})
        folder = Path(pretrained).parent
        if (folder / _CONFIG_FILE).is_file() and Path(pretrained).name in _WEIGHT_FILES:
            # A Hub snapshot holding open_clip's own layout: build the architecture its config describes
            # (for the official repositories, the same as the named one) and load its weights.
            name, pretrained = f"local-dir:{folder}", None
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(pretrained) if pretrained is not None else None, device=device,
            precision=precision, **kwargs)
    except FileNotFoundError as e:
        raise MissingWeightsError(f"CLIP scorer: {str(e).splitlines()[0]}") from None
    tokenizer = open_clip.get_tokenizer(name)
    return net.eval(), preprocess, tokenizer


class ClipScorer:
    """CLIP concept score per image: max(0, w·cos(E_img(x), E_txt(c))), w = 2.5.

    The text embedding of a concept is the renormalised mean over `templates` ("{}" = the bare concept,
    as in the paper). `accuracy` compares raw cosines: an image is correct when it is closer to the
    concept than to every competing text (default: the empty prompt, which is never templated).
    """

    def __init__(self, model: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai", *,
                 templates: Sequence[str] = ("{}",), weight: float = 2.5, batch_size: int = 50,
                 device: str | torch.device | None = None, precision: str = "fp32", progress: bool = True):
        if not templates or any("{}" not in t for t in templates):
            raise ConfigError(f"CLIP scorer: every template needs a '{{}}' for the concept, got {list(templates)}")
        self.templates = list(templates)
        self.weight = weight
        self.batch_size = batch_size
        self.progress = progress
        self.device = choose_device(device)
        self.model, self.preprocess, self.tokenizer = load_clip(model, pretrained, self.device, precision)
        self.name = f"{model}/{pretrained}"

    @torch.no_grad()
    def image_features(self, images: Sequence) -> torch.Tensor:
        """Unit-norm image embeddings [N, E] (float32, cpu); `images` are PIL images or paths."""
        out = []
        for chunk in batched(images, self.batch_size, "CLIP images", self.progress):
            x = torch.stack([self.preprocess(load_image(im)) for im in chunk]).to(self.device)  # (B, 3, H, W)
            out.append(self.model.encode_image(x, normalize=True).float().cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings [T, E]; each text is averaged over the templates ("" stays empty)."""
        feats = []
        for text in texts:
            prompts = [""] if text == "" else [t.replace("{}", text) for t in self.templates]
            tokens = self.tokenizer(prompts).to(self.device)
            e = self.model.encode_text(tokens, normalize=True).float().mean(0)  # (E,)
            feats.append(e / e.norm())
        return torch.stack(feats).cpu()

    def cosines(self, images: Sequence, texts: Sequence[str]) -> torch.Tensor:
        """cos(image, text) for every pair [N, T]."""
        if len(images) == 0:
            return torch.empty(0, len(texts))
        img, txt = self.image_features(images), self.text_features(texts)
        # One matrix-vector product per text: a GEMM may round columns differently, and equal texts must tie.
        return torch.stack([img @ t for t in txt], dim=1)

    def score(self, items: Sequence, concept: str) -> list[float]:
        """One CLIP score per image, in order."""
        cos = self.cosines(items, [concept])[:, 0]
        return (self.weight * cos).clamp(min=0).tolist()

    def accuracy(self, images: Sequence, concept: str, against: Sequence[str] = ("",)) -> list[bool]:
        """Per image: closer to `concept` than to every text in `against`."""
        return [c for _, c in self._evaluate(images, concept, against)]

    def _evaluate(self, images, concept, against):
        against = list(against)
        if not against:
            raise ConfigError("CLIP scorer: accuracy needs at least one competing text (e.g. '')")
        cos = self.cosines(images, [concept, *against])  # (N, 1 + A)
        scores = (self.weight * cos[:, 0]).clamp(min=0)
        correct = (cos[:, :1] > cos[:, 1:]).all(dim=1)
        return list(zip(scores.tolist(), correct.tolist()))
