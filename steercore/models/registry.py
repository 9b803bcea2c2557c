"""The models Steerflow knows by keyword, and one loader for them (or for any Hub id / local folder).

Weights are only ever read from a local folder or the Hugging Face cache unless the Hub is reachable; with
`HF_HUB_OFFLINE=1` (or no network) and no local copy, `load_model` fails at once with a `MissingWeightsError`
naming the model and the command that fetches it.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.hub import model_source

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # steercore/


@dataclass(frozen=True)
class ModelSpec:
    """How to load and run one model. `cls` is a dotted import path, imported only when the model is loaded."""

    key: str
    hub_id: str | None
    cls: str
    kind: str  # 't2i' (a diffusers pipeline) or 'lm' (a causal LM and its tokenizer)
    dtype: str = "float32"  # on a GPU; the CPU always runs float32
    steps: int | None = None  # default number of inference steps
    guidance: float | None = None  # default guidance scale
    variant: str | None = None  # weight-file variant on the Hub ('fp16')
    local: str | None = None  # folder relative to the steercore package (testbed models)
    load_kwargs: dict = field(default_factory=dict)


_SD = "diffusers.StableDiffusionPipeline"
_SDXL = "diffusers.StableDiffusionXLPipeline"
_NO_SAFETY = {"safety_checker": None, "requires_safety_checker": False}
MODELS: dict[str, ModelSpec] = {s.key: s for s in [
    ModelSpec(key="sd14", hub_id="CompVis/stable-diffusion-v1-4", cls=_SD, kind="t2i", dtype="float16", steps=50,
              guidance=7.5, load_kwargs=_NO_SAFETY),
    ModelSpec(key="sd15", hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5", cls=_SD, kind="t2i", dtype="float16",
              steps=50, guidance=7.5, load_kwargs=_NO_SAFETY),
    ModelSpec(key="sd21", hub_id="stabilityai/stable-diffusion-2-1", cls=_SD, kind="t2i", dtype="float16", steps=50,
              guidance=7.5),
    ModelSpec(key="sdxl", hub_id="stabilityai/stable-diffusion-xl-base-1.0", cls=_SDXL, kind="t2i", dtype="float16",
              steps=30, guidance=5.0, variant="fp16"),
    ModelSpec(key="sdxl-turbo", hub_id="stabilityai/sdxl-turbo", cls=_SDXL, kind="t2i", dtype="float16", steps=1,
              guidance=0.0, variant="fp16"),
    ModelSpec(key="sana", hub_id="Efficient-Large-Model/Sana_Sprint_1.6B_1024px_teacher_diffusers",
              cls="diffusers.SanaPipeline", kind="t2i", dtype="bfloat16", steps=20, guidance=4.5),
    ModelSpec(key="sana-sprint", hub_id="Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
              cls="diffusers.SanaSprintPipeline", kind="t2i", dtype="bfloat16", steps=1, guidance=4.5),
    ModelSpec(key="pixart", hub_id="PixArt-alpha/PixArt-XL-2-1024-MS", cls="diffusers.PixArtAlphaPipeline", kind="t2i",
              dtype="float16", steps=20, guidance=4.5),
    ModelSpec(key="flux", hub_id="black-forest-labs/FLUX.1-dev", cls="diffusers.FluxPipeline", kind="t2i",
              dtype="bfloat16", steps=28, guidance=3.5),
    ModelSpec(key="flux-schnell", hub_id="black-forest-labs/FLUX.1-schnell", cls="diffusers.FluxPipeline", kind="t2i",
              dtype="bfloat16", steps=1, guidance=0.0),
    ModelSpec(key="llama2-7b-chat", hub_id="meta-llama/Llama-2-7b-chat-hf", cls="transformers.LlamaForCausalLM",
              kind="lm", dtype="float16"),
    ModelSpec(key="qwen2.5-7b", hub_id="Qwen/Qwen2.5-7B-Instruct", cls="transformers.Qwen2ForCausalLM", kind="lm",
              dtype="bfloat16"),
    ModelSpec(key="qwen2.5-14b", hub_id="Qwen/Qwen2.5-14B-Instruct", cls="transformers.Qwen2ForCausalLM", kind="lm",
              dtype="bfloat16"),
    ModelSpec(key="gemma2-2b", hub_id="google/gemma-2-2b-it", cls="transformers.Gemma2ForCausalLM", kind="lm",
              dtype="bfloat16"),
    ModelSpec(key="testbed-t2i", hub_id=None, cls="steercore.testbed.t2i.ShapesPipeline", kind="t2i", steps=20,
              guidance=4.0, local="testbed/weights/t2i"),
    ModelSpec(key="testbed-lm", hub_id=None, cls="transformers.LlamaForCausalLM", kind="lm", local="testbed/weights/lm"),
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
    return model_source(spec.hub_id, what=f"model {spec.key}")


def _spec_for_folder(path: Path) -> ModelSpec:
    if (path / "model_index.json").exists():
        import json

        cls = json.loads((path / "model_index.json").read_text())["_class_name"]
        return ModelSpec(key=path.name, hub_id=None, cls=f"diffusers.{cls}", kind="t2i")
    if (path / "config.json").exists():
        return ModelSpec(key=path.name, hub_id=None, cls="transformers.AutoModelForCausalLM", kind="lm")
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
    dtype defaults to the spec's, except on CPU where half precision falls back to float32. A model other
    than the testbed refuses the CPU unless device is an explicit 'cpu' (a `JobDevice` from device: auto
    that found no GPU is not). Logs model, revision, dtype, device and GPU name to stderr (the job log).
    """
    spec = resolve_spec(name_or_path, local_dir)
    if Path(str(name_or_path)).is_dir() and str(name_or_path) not in MODELS:
        local_dir = Path(str(name_or_path))
    source = resolve_weights(spec, local_dir)  # never downloads: missing weights offline fail here, at once
    requested = "auto" if device is None else getattr(device, "requested", str(device))
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and spec.local is None and requested != "cpu":
        raise ConfigError(f"model {spec.key} would run on the CPU (device: {requested}, no GPU visible), which "
                          "takes days to weeks; run it on a GPU machine, or set device: cpu in "
                          "config/config.yaml (device='cpu' in Python) to mean it")
    if dtype is None:
        dtype = spec.dtype if device.type != "cpu" else "float32"
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    _log_start(spec, source, torch_dtype, device)
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


def _revision(source: str) -> str:
    """The weights' revision: the Hub commit of a cached snapshot, the commit recorded by train_testbed, or
    'local' for any other folder."""
    path = Path(source)
    if path.parent.name == "snapshots":
        return path.name
    meta = path / "testbed_meta.json"
    if path.is_dir() and meta.is_file():
        import json

        try:
            return "testbed@" + str(json.loads(meta.read_text()).get("git_commit", "unknown"))[:12]
        except (ValueError, AttributeError):
            return "local"
    return "local" if path.is_dir() else "main"


def _log_start(spec: ModelSpec, source: str, dtype: torch.dtype, device: torch.device) -> None:
    """One line at the start of every model job's log: what runs, from which weights, where."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"model {spec.key}: revision {_revision(source)}, dtype {str(dtype).removeprefix('torch.')}, "
          f"device {device}, GPU {gpu}, weights {source}", file=sys.stderr, flush=True)


def _spec_for_hub_id(hub_id: str) -> ModelSpec:
    """A Hub id outside the registry: a pipeline if it has model_index.json (cached, or asked of the Hub)."""
    from huggingface_hub import file_exists, snapshot_download

    try:
        return replace(_spec_for_folder(Path(snapshot_download(hub_id, local_files_only=True))), hub_id=hub_id)
    except ConfigError:
        raise
    except Exception:  # not cached
        pass
    spec = ModelSpec(key=hub_id, hub_id=hub_id, cls="transformers.AutoModelForCausalLM", kind="lm")
    resolve_weights(spec)  # offline or unreachable: MissingWeightsError at once
    if file_exists(hub_id, "model_index.json"):
        spec = replace(spec, cls="diffusers.DiffusionPipeline", kind="t2i")
    return spec


# ---------------------------------------------------------------------------------------------- downloads

# Pipeline components each diffusers class reads (its other folders, e.g. SDXL's vae_1_0 or ONNX exports and
# a safety checker we do not load, are never downloaded).
PIPELINE_COMPONENTS = {
    "StableDiffusionPipeline": ("scheduler", "text_encoder", "tokenizer", "unet", "vae", "feature_extractor"),
    "StableDiffusionXLPipeline": ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                                  "unet", "vae"),
    "SanaPipeline": ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"),
    "SanaSprintPipeline": ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"),
    "PixArtAlphaPipeline": ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"),
    "FluxPipeline": ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae"),
}
LM_REQUIRED = ("config.json", "*.safetensors", "tokenizer.*")
# Weight formats we never read (the safetensors files are enough).
_OTHER_FORMATS = ("*.bin", "*.ckpt", "*.pth", "*.pt", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.xml",
                  "*openvino*")


def model_downloads(spec: ModelSpec) -> list:
    """What loading `spec` reads from the Hub (an empty list for the shipped testbed models)."""
    from steercore.hub import TRANSFORMERS_FILES, Download

    if spec.hub_id is None:
        return []
    what = f"model {spec.key}"
    size = approx_weight_bytes(spec, stored=True)
    if spec.kind == "lm":
        return [Download(what, spec.hub_id, include=tuple(TRANSFORMERS_FILES), exclude=("original/*",),
                         require=LM_REQUIRED, size=size)]
    comps = PIPELINE_COMPONENTS.get(spec.cls.rpartition(".")[2])
    if comps is None:
        raise ConfigError(f"model {spec.key}: no component list for {spec.cls} (add it to PIPELINE_COMPONENTS)")
    if spec.variant:  # only the variant's weights: not the full-precision copies next to them
        exclude = tuple(f"*/{stem}{tail}" for stem in ("diffusion_pytorch_model", "model")
                        for tail in (".safetensors", "-*-of-*.safetensors", ".safetensors.index.json"))
        exclude += ("*.non_ema.*",)
    else:
        exclude = ("*.fp16.*", "*.non_ema.*", "*.ema.*")
    return [Download(what, spec.hub_id, include=("model_index.json", *(f"{c}/*" for c in comps)),
                     exclude=exclude + _OTHER_FORMATS, variant=spec.variant, size=size)]


DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Parameters of every component a model loads (UNet/transformer, text encoders, VAE; LLM with its head),
# counted on the real configs built on the meta device by benchmarks/weight_sizes.py.
PARAMS: dict[str, int] = {"sd14": 1_066_235_307, "sd15": 1_066_235_307, "sdxl": 3_468_837_867,
                          "sdxl-turbo": 3_468_837_867, "sana": 4_581_698_563, "llama2-7b-chat": 6_738_415_616}
# dtype of the files the loader reads when it is not the variant's or the run dtype (the repository's own
# full-precision files).
STORED_DTYPE = {"sd14": "float32", "sd15": "float32", "sd21": "float32"}


def approx_weight_bytes(spec: ModelSpec, *, stored: bool = False) -> int | None:
    """Size of the weights in GPU memory (the spec's dtype), or of the files read (`stored`), from `PARAMS`."""
    n = PARAMS.get(spec.key)
    if n is None:
        return None
    if stored:
        dtype = "float16" if spec.variant == "fp16" else STORED_DTYPE.get(spec.key, spec.dtype)
    else:
        dtype = spec.dtype
    return n * DTYPE_BYTES[dtype]
