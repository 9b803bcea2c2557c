"""Stand-in weights and data sets under the real names: a Hugging Face cache (`HF_HUB_CACHE` layout) and a
torch-hub folder (`TORCH_HOME`) holding tiny random-init models of the real classes, under the repo ids, file
names and weight variants that steercore's registry, scorers and corpora ask for.

With `HF_HUB_OFFLINE=1`, `HF_HUB_CACHE=<root>/hf` and `TORCH_HOME=<root>/torch` (see `StandinHub.env`), the real
loading code finds them exactly as it finds downloaded weights. Layout, as huggingface_hub writes it:

    hf/models--org--name/blobs/<sha256>                     file contents
    hf/models--org--name/snapshots/<commit>/<path>         relative symlink to the blob
    hf/models--org--name/refs/main                          <commit>
    hf/datasets--org--name/...                              the same for data sets
    torch/hub/checkpoints/<file>                            torch.hub.load_state_dict_from_url's folder

Every model is built from config with the real class (seeded), saved with its library's `save_pretrained`
(fp16 variant files where the registry sets `variant="fp16"`) and placed into the cache. Tokenizers are built
offline; Llama-2-chat gets the `[INST]` chat template, the judges Llama 3's header template and a byte-level
BPE in which "0"…"10" are single tokens. `build_standin_hub(root)` writes everything once (a `.complete`
marker) and returns a `StandinHub`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

import tiny_models

# ------------------------------------------------------------------------------------------ what is stood in

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_TURBO = "stabilityai/sdxl-turbo"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SANA = "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_teacher_diffusers"
LLAMA2 = "meta-llama/Llama-2-7b-chat-hf"
JUDGES = ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.2-3B-Instruct")
BERT = "bert-base-uncased"  # Detoxify 'original' reads its config and tokenizer from here
ROBERTA = "roberta-large"  # BERTScore
CLIP = "timm/vit_base_patch32_clip_224.openai"  # open_clip ViT-B-32 'openai'
RELAION = ("laion/relaion2B-en-research", "part-00000-b31ba513-fc6b-4450-9ba4-a1bba183f408-c000.snappy.parquet")
ALPACA = ("tatsu-lab/alpaca", "data/train-00000-of-00001-a09b74b3ef9c3b56.parquet")
RTP = ("allenai/real-toxicity-prompts", "prompts.jsonl")
INCEPTION = "inception-2015-12-05.pt"
DETOXIFY_ORIGINAL = "toxic_original-c1212f89.ckpt"

N_CAPTIONS = 1200  # re-LAION stand-in rows
N_ALPACA = 600
N_RTP = 40

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if m['role'] == 'user' %}{% set text = m['content'] %}"
    "{% if loop.first and system %}{% set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + text %}{% endif %}"
    "{{ bos_token + '[INST] ' + text.strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")

LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

# Llama 3's pre-tokenizer split: words, numbers in groups of at most three digits, punctuation, spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CAPTION_WORDS = ("a photo of dog cat wolf pig horse legislator farm scene field city street at night in the snow "
                 "painting portrait of an old man red car on a beach mountain lake sunset").split()


@dataclass(frozen=True)
class StandinHub:
    root: Path

    @property
    def hf_cache(self) -> Path:
        return self.root / "hf"

    @property
    def torch_home(self) -> Path:
        return self.root / "torch"

    def env(self) -> dict[str, str]:
        """What a process needs to find the stand-ins (and nothing else) offline."""
        return {"HF_HUB_CACHE": str(self.hf_cache), "HF_HOME": str(self.root / "hf_home"),
                "TORCH_HOME": str(self.torch_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1"}

    def snapshot(self, repo: str, repo_type: str = "model") -> Path:
        folder = self.hf_cache / f"{repo_type}s--{repo.replace('/', '--')}"
        return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


# ------------------------------------------------------------------------------------------ cache layout


def commit_of(repo: str) -> str:
    """A fixed 40-hex commit per repository (the stand-ins' 'revision')."""
    return hashlib.sha1(f"standin:{repo}".encode()).hexdigest()


def place(cache: Path, repo: str, files: Path, *, repo_type: str = "model") -> Path:
    """Copy every file under `files` into the cache entry of `repo`: blobs named by their SHA-256, relative
    symlinks from the snapshot of a fixed commit, and refs/main naming it. Returns the snapshot folder."""
    entry = cache / f"{repo_type}s--{repo.replace('/', '--')}"
    commit = commit_of(repo)
    snap = entry / "snapshots" / commit
    (entry / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in files.rglob("*") if p.is_file() and p.name != ".complete"):
        rel = f.relative_to(files)
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        blob = entry / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(commit)
    return snap


# ------------------------------------------------------------------------------------------ tokenizers


def _bpe_merges(words, prefix: str = "") -> tuple[list[str], list[tuple[str, str]]]:
    """Tokens and merges that build each word (with `prefix`, e.g. '▁' or 'Ġ') left to right."""
    tokens, merges = [], []
    for w in words:
        w = prefix + w
        cur = w[0]
        for ch in w[1:]:
            if (cur, ch) not in merges:
                merges.append((cur, ch))
            cur += ch
            if cur not in tokens:
                tokens.append(cur)
    return tokens, merges


def llama2_tokenizer():
    """The real LlamaTokenizer class: SentencePiece-style BPE with byte fallback, Llama-2-chat's template."""
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{i:02X}>": 3 + i for i in range(256)}}
    for ch in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'[]/":
        vocab.setdefault(ch, len(vocab))
    tokens, merges = _bpe_merges(list(tiny_models.WORDS) + ["INST", "horse", "motorcycle", "toxic", "helpful"], "▁")
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    tok = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False,
                         model_max_length=4096, padding_side="left")
    tok.chat_template = LLAMA2_CHAT_TEMPLATE
    return tok


def llama3_tokenizer():
    """A byte-level BPE like Llama 3's (tiktoken-style split, numbers ≤ 3 digits per token) with its special
    tokens and header chat template; "0"…"10" are single tokens, as the judge needs."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    base = list(bytes_to_unicode().values())
    words = ["10", *tiny_models.WORDS, "rating", "relevant", "answer"]
    tokens, merges = _bpe_merges(words)
    space_tokens, space_merges = _bpe_merges(tiny_models.WORDS, "Ġ")
    vocab = {t: i for i, t in enumerate(dict.fromkeys(base + tokens + space_tokens))}
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges + [m for m in space_merges if m not in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   model_max_length=4096)
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def bert_tokenizer():
    from transformers import BertTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,?!'", *letters, *[f"##{c}" for c in letters],
             *dict.fromkeys(list(tiny_models.WORDS) + ["toxic", "helpful", "stupid", "idiot", "kind"])]
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, model_max_length=512)


def roberta_tokenizer():
    from transformers import RobertaTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokens, merges = _bpe_merges(tiny_models.WORDS, "Ġ")
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + list(bytes_to_unicode().values()) + tokens
                                                      + ["<mask>"]))}
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)


# ------------------------------------------------------------------------------------------ models


def _save_pipeline(pipe, out: Path, variant: str | None) -> None:
    if variant == "fp16":
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(out, variant=variant, safe_serialization=True)


def _sdxl(tmp: Path, out: Path, *, turbo: bool) -> None:
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline

    path = tiny_models.build_sdxl(tmp)
    pipe = StableDiffusionXLPipeline.from_pretrained(path, local_files_only=True)
    sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    pipe.scheduler = (EulerAncestralDiscreteScheduler(**sched, timestep_spacing="trailing") if turbo
                      else EulerDiscreteScheduler(**sched, timestep_spacing="leading"))
    _save_pipeline(pipe, out, "fp16")


def _sd15(tmp: Path, out: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPImageProcessor

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.build_sd(tmp), local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)
    # The repository's feature_extractor folder (read by the pipeline even without its safety checker).
    pipe.register_modules(feature_extractor=CLIPImageProcessor(size={"shortest_edge": 224},
                                                               crop_size={"height": 224, "width": 224}))
    pipe.scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    _save_pipeline(pipe, out, None)


def _sana(tmp: Path, out: Path) -> None:
    from diffusers import SanaPipeline

    # The real 1024-px model's latent geometry at the pipeline's smallest resolution bin: sample size 16 (the
    # 512-px bin, which resolution binning requires) and a 32x DC-AE, so a 512-px image is a 16x16 latent.
    tiny = tiny_models.build_sana(tmp, sample_size=16, vae_stages=6)
    _save_pipeline(SanaPipeline.from_pretrained(tiny, local_files_only=True), out, None)


def _llama(tok, out: Path, *, dtype: torch.dtype, shards: bool, tie: bool = False) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=tie)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.save_pretrained(out, max_shard_size="40KB" if shards else "5GB")
    tok.save_pretrained(out)


def _bert_detoxify(out_hf: Path, out_ckpt: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    tok = bert_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=512)
    cfg.save_pretrained(out_hf)
    tok.save_pretrained(out_hf)
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    net = BertForSequenceClassification(BertConfig.from_pretrained(out_hf, num_labels=len(classes)))
    ckpt = {"config": {"arch": {"args": {"model_type": BERT, "model_name": "BertForSequenceClassification",
                                         "tokenizer_name": "BertTokenizer", "num_classes": len(classes)}},
                       "dataset": {"args": {"classes": classes}}},
            "state_dict": {k: v.clone() for k, v in net.state_dict().items()}}
    out_ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_ckpt)  # plain containers and tensors: loads with weights_only=True


def _roberta(out: Path) -> None:
    from transformers import RobertaConfig, RobertaModel

    tok = roberta_tokenizer()
    RobertaModel(RobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=17, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=514, pad_token_id=tok.pad_token_id,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
                 ).save_pretrained(out)
    tok.save_pretrained(out)


def _open_clip(out: Path) -> None:
    """open_clip's own hub layout (open_clip_config.json + open_clip_model.safetensors), small config, the real
    CLIP BPE tokenizer's vocabulary size."""
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {"embed_dim": 16, "quick_gelu": True,
                 "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    out.mkdir(parents=True, exist_ok=True)
    model = open_clip.CLIP(**model_cfg)  # the class open_clip builds for this config
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))


class _Features(torch.nn.Module):
    """[B, 3, 299, 299] → [B, 2048]: a tiny stand-in of clean-fid's Inception feature layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=13, stride=13)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.proj = torch.nn.Linear(8 * 4 * 4, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(torch.tanh(self.conv(x))).flatten(1))


class _Inception(torch.nn.Module):
    """The interface of inception-2015-12-05.pt: `.layers(x)` on [-1, 1] input, `forward(x, return_features)`
    on 0..255 input (resizing inside)."""

    def __init__(self):
        super().__init__()
        self.layers = _Features()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128)


def _inception(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(_Inception().eval()).save(str(out))


# ------------------------------------------------------------------------------------------ data sets


def _captions(n: int) -> list[str]:
    g = torch.Generator().manual_seed(1)
    picks = torch.randint(len(CAPTION_WORDS), (n, 6), generator=g).tolist()
    return [" ".join(CAPTION_WORDS[i] for i in row) + f" {k}" for k, row in enumerate(picks)]


def _relaion(out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    caps = _captions(N_CAPTIONS)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"url": [f"https://example.org/{i}.jpg" for i in range(len(caps))], "caption": caps}),
                   out, compression="snappy")


def _alpaca(out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    caps = _captions(N_ALPACA)
    rec = {"instruction": [f"Describe {c}." for c in caps], "input": ["" if i % 3 else "briefly" for i in range(N_ALPACA)],
           "output": [f"It is {c}." for c in caps]}
    rec["text"] = [f"### Instruction:\n{a}\n\n### Response:\n{b}" for a, b in zip(rec["instruction"], rec["output"])]
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rec), out)


def _rtp(out: Path) -> None:
    lines = []
    for i in range(N_RTP):
        tox = None if i % 13 == 12 else round((i * 37 % 100) / 100, 2)
        lines.append(json.dumps({"filename": f"{i:04d}.txt", "begin": 0, "end": 10, "challenging": i % 2 == 0,
                                 "prompt": {"text": f"prompt {i} about a dog", "toxicity": tox},
                                 "continuation": {"text": " and more", "toxicity": 0.1}}))
    out.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ build


def build_standin_hub(root: str | os.PathLike) -> StandinHub:
    """Write every stand-in under `root` (once: a `.complete` marker) and return where they are."""
    hub = StandinHub(Path(root))
    if (hub.root / ".complete").exists():
        return hub
    hub.root.mkdir(parents=True, exist_ok=True)
    cache, checkpoints = hub.hf_cache, hub.torch_home / "hub" / "checkpoints"
    with tempfile.TemporaryDirectory(dir=hub.root) as t:
        tmp = Path(t)

        def staged(name: str, make) -> Path:
            folder = tmp / "stage" / name
            folder.mkdir(parents=True)
            torch.manual_seed(0)
            make(folder)
            return folder

        place(cache, SDXL, staged("sdxl", lambda o: _sdxl(tmp / "tiny", o, turbo=False)))
        place(cache, SDXL_TURBO, staged("sdxl-turbo", lambda o: _sdxl(tmp / "tiny", o, turbo=True)))
        place(cache, SD15, staged("sd15", lambda o: _sd15(tmp / "tiny", o)))
        place(cache, SANA, staged("sana", lambda o: _sana(tmp / "tiny", o)))
        place(cache, LLAMA2, staged("llama2", lambda o: _llama(llama2_tokenizer(), o, dtype=torch.float16,
                                                                  shards=True)))
        for i, judge in enumerate(JUDGES):
            place(cache, judge, staged(f"judge{i}", lambda o, i=i: _llama(llama3_tokenizer(), o, dtype=torch.bfloat16,
                                                                             shards=False, tie=i == 1)))
        place(cache, BERT, staged("bert", lambda o: _bert_detoxify(o, checkpoints / DETOXIFY_ORIGINAL)))
        place(cache, ROBERTA, staged("roberta", _roberta))
        place(cache, CLIP, staged("clip", _open_clip))
        _inception(checkpoints / INCEPTION)
        place(cache, RELAION[0], staged("relaion", lambda o: _relaion(o / RELAION[1])), repo_type="dataset")
        place(cache, ALPACA[0], staged("alpaca", lambda o: _alpaca(o / ALPACA[1])), repo_type="dataset")
        place(cache, RTP[0], staged("rtp", lambda o: _rtp(o / RTP[1])), repo_type="dataset")
    (hub.root / ".complete").write_text("ok")
    return hub


if __name__ == "__main__":  # build a stand-in hub by hand: python tests/standin_hub.py <folder>
    import sys

    print(build_standin_hub(sys.argv[1]).env())
