"""The models Steerflow knows by keyword, and one loader for them (or for any Hub id / local folder).

Weights are only ever read from a local folder or the Hugging Face cache unless the Hub is reachable; with
`HF_HUB_OFFLINE=1` (or no network) and no local copy, `load_model` fails at once with a `MissingWeightsError`
naming the model and the command that fetches it.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import torch

from .errors import ConfigError, MissingWeightsError

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelSpec:
    """How to load and run one model. `cls` is a dotted import path, imported only when the model is loaded."""

    key: str
    hub_id: str | None
    cls: str
    kind: str  # 't2i' (a diffusers pipeline) or 'lm' (a causal LM and its tokenizer)
    family: str  # unet | sana | pixart | flux | llama | qwen2 | gemma2
    dtype: str = "float32"
    steps: int | None = None  # default number of inference steps
    guidance: float | None = None  # default guidance scale
    resolution: int | None = None  # default image side in pixels
    variant: str | None = None  # weight-file variant on the Hub ('fp16')
    local: str | None = None  # folder relative to the steercore package (testbed models)
    load_kwargs: dict = field(default_factory=dict)


_SD = "diffusers.StableDiffusionPipeline"
_NO_SAFETY = {"safety_checker": None, "requires_safety_checker": False}
MODELS: dict[str, ModelSpec] = {s.key: s for s in [
    ModelSpec("sd14", "CompVis/stable-diffusion-v1-4", _SD, "t2i", "unet", "float16", 50, 7.5, 512,
              load_kwargs=_NO_SAFETY),
    ModelSpec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", _SD, "t2i", "unet", "float16", 50, 7.5, 512,
              load_kwargs=_NO_SAFETY),
    ModelSpec("sd21", "stabilityai/stable-diffusion-2-1", _SD, "t2i", "unet", "float16", 50, 7.5, 768),
    ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "diffusers.StableDiffusionXLPipeline", "t2i", "unet",
              "float16", 30, 5.0, 1024, variant="fp16"),
    ModelSpec("sdxl-turbo", "stabilityai/sdxl-turbo", "diffusers.StableDiffusionXLPipeline", "t2i", "unet", "float16",
              1, 0.0, 512, variant="fp16"),
    ModelSpec("sana", "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_teacher_diffusers", "diffusers.SanaPipeline",
              "t2i", "sana", "bfloat16", 20, 4.5, 1024),
    ModelSpec("sana-sprint", "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers", "diffusers.SanaSprintPipeline",
              "t2i", "sana", "bfloat16", 1, 4.5, 1024),
    ModelSpec("pixart", "PixArt-alpha/PixArt-XL-2-1024-MS", "diffusers.PixArtAlphaPipeline", "t2i", "pixart",
              "float16", 20, 4.5, 1024),
    ModelSpec("flux", "black-forest-labs/FLUX.1-dev", "diffusers.FluxPipeline", "t2i", "flux", "bfloat16", 28, 3.5, 1024),
    ModelSpec("flux-schnell", "black-forest-labs/FLUX.1-schnell", "diffusers.FluxPipeline", "t2i", "flux", "bfloat16",
              1, 0.0, 1024),
    ModelSpec("llama2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "transformers.LlamaForCausalLM", "lm", "llama",
              "float16"),
    ModelSpec("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "transformers.Qwen2ForCausalLM", "lm", "qwen2", "bfloat16"),
    ModelSpec("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct", "transformers.Qwen2ForCausalLM", "lm", "qwen2", "bfloat16"),
    ModelSpec("gemma2-2b", "google/gemma-2-2b-it", "transformers.Gemma2ForCausalLM", "lm", "gemma2", "bfloat16"),
    ModelSpec("testbed-t2i", None, "steercore.testbed.t2i.ShapesPipeline", "t2i", "unet", "float32", 20, 4.0, 32,
              local="testbed/weights/t2i"),
    ModelSpec("testbed-lm", None, "transformers.LlamaForCausalLM", "lm", "llama", "float32", local="testbed/weights/lm"),
]}


def model_spec(name: str) -> ModelSpec:
    """The spec of a registry keyword, or of a Hub id listed in the registry."""
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.hub_id == name:
            return spec
    raise ConfigError(f"unknown model '{name}'; known models: {', '.join(MODELS)} (or pass a Hub id or a local folder)")


def _import(dotted: str):
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {dotted} ({e}); is the package version pinned in pyproject.toml installed?")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the Hub endpoint (no retries), so that a machine without network fails fast."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_weights(spec: ModelSpec, local_dir: str | os.PathLike | None = None) -> str:
    """A local folder with the weights, or the Hub id when it must (and can) be downloaded."""
    if local_dir is not None:
        if not Path(local_dir).is_dir():
            raise MissingWeightsError(f"{spec.key}: local folder {local_dir} does not exist")
        return str(local_dir)
    if spec.local is not None:
        folder = PACKAGE_DIR / spec.local
        if not folder.is_dir():
            raise MissingWeightsError(f"{spec.key}: no weights in {folder}; build them with the train_testbed rule")
        return str(folder)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(spec.hub_id, local_files_only=True)
    except Exception:  # not (fully) cached: LocalEntryNotFoundError and friends
        pass
    fetch = f"hf download {spec.hub_id}"
    if _offline():
        raise MissingWeightsError(f"{spec.key}: {spec.hub_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is "
                                  f"set; fetch it on a machine with network (`{fetch}`) or pass a local folder")
    if not _hub_reachable():
        raise MissingWeightsError(f"{spec.key}: {spec.hub_id} is not in the Hugging Face cache and the Hub is "
                                  f"unreachable; fetch it with `{fetch}` or pass a local folder")
    return spec.hub_id


def _spec_for_folder(path: Path) -> ModelSpec:
    if (path / "model_index.json").exists():
        import json

        cls = json.loads((path / "model_index.json").read_text())["_class_name"]
        family = next((f for f in ("sana", "pixart", "flux") if f in cls.lower()), "unet")
        return ModelSpec(path.name, None, f"diffusers.{cls}", "t2i", family, local=None)
    if (path / "config.json").exists():
        return ModelSpec(path.name, None, "transformers.AutoModelForCausalLM", "lm", "auto")
    raise ConfigError(f"{path} is neither a diffusers pipeline (model_index.json) nor a transformers model (config.json)")


def _variant_present(folder: str, variant: str | None) -> str | None:
    if variant is None or not Path(folder).is_dir():
        return None
    return variant if any(Path(folder).rglob(f"*.{variant}.safetensors")) else None


def resolve_spec(name_or_path: str, local_dir: str | os.PathLike | None = None) -> ModelSpec:
    """The spec of a registry key, a Hub id or a local folder (read from its model_index.json/config.json)."""
    name = str(name_or_path)
    if name in MODELS or any(s.hub_id == name for s in MODELS.values()):
        return model_spec(name)
    if Path(name).is_dir():
        return _spec_for_folder(Path(name))
    if "/" in name and local_dir is not None:
        return _spec_for_folder(Path(local_dir))
    if "/" in name:
        return _spec_for_hub_id(name)
    return model_spec(name)  # raises the ConfigError listing the known models


def load_model(name_or_path: str, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
               local_dir: str | os.PathLike | None = None):
    """Load a registry model, a Hub id or a local folder, in eval mode.

    Returns a diffusers pipeline ('t2i') or (model, tokenizer) ('lm'). device defaults to CUDA when present;
    dtype defaults to the spec's, except on CPU where half precision falls back to float32.
    """
    spec = resolve_spec(name_or_path, local_dir)
    if Path(str(name_or_path)).is_dir() and str(name_or_path) not in MODELS:
        local_dir = Path(str(name_or_path))
    source = resolve_weights(spec, local_dir)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = spec.dtype if device.type != "cpu" else "float32"
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    cls = _import(spec.cls)
    if spec.kind == "t2i":
        variant = _variant_present(source, spec.variant)
        pipe = cls.from_pretrained(source, dtype=torch_dtype, variant=variant, **spec.load_kwargs)
        pipe = pipe.to(device)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        pipe.set_progress_bar_config(disable=True)
        return pipe
    from transformers import AutoTokenizer

    model = cls.from_pretrained(source, dtype=torch_dtype, **spec.load_kwargs).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer


def _spec_for_hub_id(hub_id: str) -> ModelSpec:
    """A Hub id outside the registry: a pipeline if it has model_index.json (cached, or asked of the Hub)."""
    from huggingface_hub import file_exists, snapshot_download

    try:
        return replace(_spec_for_folder(Path(snapshot_download(hub_id, local_files_only=True))), hub_id=hub_id)
    except ConfigError:
        raise
    except Exception:  # not cached
        pass
    spec = ModelSpec(hub_id, hub_id, "transformers.AutoModelForCausalLM", "lm", "auto")
    resolve_weights(spec)  # offline or unreachable: MissingWeightsError at once
    if file_exists(hub_id, "model_index.json"):
        spec = replace(spec, cls="diffusers.DiffusionPipeline", kind="t2i", family="unet")
    return spec
