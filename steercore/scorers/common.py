"""What every scorer shares: device choice, batching with a progress bar, weights resolved from a local
path or the Hugging Face / torch-hub cache (one-line `MissingWeightsError` when offline), and TSV tables.

Weights are looked up locally first, so a cached model never touches the network. Only when nothing is
cached, HF_HUB_OFFLINE is unset and the host answers within a few seconds is anything downloaded; this
avoids huggingface_hub's retry loop (about 25 s per file) on machines without network.
"""

from __future__ import annotations

import csv
import functools
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, MissingWeightsError
from ..files import atomic_path

HUB_HOST = "huggingface.co"
# Files a transformers model needs; skips duplicate formats (original/*.pth of Llama is 16 GB).
TRANSFORMERS_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """An explicit `device` wins; otherwise cuda when available, else cpu."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batched(items: Sequence, batch_size: int, desc: str, progress: bool = True) -> Iterator[Sequence]:
    """Consecutive slices of `items` (the last one may be short: nothing is dropped), with a progress bar
    counting items."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    with tqdm(total=len(items), desc=desc, unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            yield chunk
            bar.update(len(chunk))


def load_image(item):
    """A PIL image in RGB from a PIL image or an image path."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as im:
            return im.convert("RGB")
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    raise ConfigError(f"expected a PIL image or an image path, got {type(item).__name__}")


def write_tsv(path: str | os.PathLike, header: Sequence[str], rows) -> None:
    """Write a tab-separated table with a header line, atomically (readers never see half a table).
    Floats are written with full precision (repr), None as an empty field."""
    header = list(header)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for row in rows:
            row = list(row)
            if len(row) != len(header):
                raise ValueError(f"{path}: row of {len(row)} fields for a header of {len(header)}: {row!r}")
            w.writerow("" if v is None else v for v in row)


# ---- weights ---------------------------------------------------------------------------------------

def offline() -> bool:
    """True when HF_HUB_OFFLINE is set (read now, not at import, so tests and scripts can set it late)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(constants.HF_HUB_OFFLINE)


@functools.lru_cache(maxsize=None)
def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """One short TCP connect; a failed DNS lookup returns at once."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _missing(what: str, name: str, how: str, why: str | None = None) -> MissingWeightsError:
    if why is None:
        why = ("HF_HUB_OFFLINE is set" if offline()
               else "the network is unreachable")
    return MissingWeightsError(f"{what}: no local copy of {name} and {why}; download it first with `{how}` "
                               "(or pass a local file/folder)")


def _hub_download(fetch, *, what: str, name: str, how: str, host: str = HUB_HOST):
    """Run `fetch(local_files_only)` against the cache, then (if allowed and possible) online."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return fetch(True)
    except LocalEntryNotFoundError:
        pass
    if offline():
        raise _missing(what, name, how) from None
    if not reachable(host):
        raise _missing(what, name, how, why=f"{host} is unreachable") from None
    try:
        return fetch(False)
    except GatedRepoError:
        raise _missing(what, name, how, why="the repository is gated (accept its licence on the Hub and run "
                                            "`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise _missing(what, name, how, why="the Hub has no such repository") from None
    except OSError as e:  # huggingface_hub's HTTP and cache errors derive from OSError
        raise _missing(what, name, how, why=f"the download failed ({_first_line(e)})") from None


def hub_file(repo: str, filename: str, *, what: str, repo_type: str = "model") -> Path:
    """Path of one file of a Hub repository, from the cache or downloaded."""
    from huggingface_hub import hf_hub_download

    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return Path(_hub_download(
        lambda local: hf_hub_download(repo, filename, repo_type=repo_type, local_files_only=local),
        what=what, name=f"'{repo}' ({filename})", how=f"hf download {repo} {filename}{kind}"))


def hub_snapshot(repo_or_path: str | os.PathLike, *, what: str,
                 allow_patterns: list[str] | None = TRANSFORMERS_FILES) -> Path:
    """A local folder holding a model: `repo_or_path` itself when it is a folder, else the Hub snapshot."""
    from huggingface_hub import snapshot_download

    p = Path(repo_or_path).expanduser()
    if p.is_dir():
        return p
    repo = str(repo_or_path)
    if p.is_absolute() or repo.startswith((".", "~")) or repo.count("/") > 1:
        raise MissingWeightsError(f"{what}: model folder {repo} does not exist")
    include = " ".join(f'"{a}"' for a in allow_patterns or [])
    how = f"hf download {repo}" + (f" --include {include}" if include else "")

    def fetch(local: bool):
        patterns = allow_patterns
        if not local and patterns == TRANSFORMERS_FILES:
            from huggingface_hub import list_repo_files

            # Older repositories have only pytorch_model.bin; newer ones both (then skip the .bin copy).
            if not any(f.endswith(".safetensors") for f in list_repo_files(repo)):
                patterns = [*patterns, "*.bin"]
        return snapshot_download(repo, allow_patterns=patterns, local_files_only=local)

    return Path(_hub_download(fetch, what=what, name=f"'{repo}'", how=how))


def url_file(url: str, *, what: str, search: Sequence[str | os.PathLike] = (),
             hash_prefix: str | None = None) -> Path:
    """A file published at `url` (e.g. a GitHub release): found in `search` or the torch hub checkpoint
    folder (where `torch.hub.load_state_dict_from_url` keeps it), else downloaded there."""
    name = Path(urlparse(url).path).name
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    for folder in [*search, target.parent]:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    how = f"curl -L --create-dirs -o {target} {url}"
    if offline():
        raise _missing(what, name, how)
    host = urlparse(url).hostname or ""
    if not reachable(host):
        raise _missing(what, name, how, why=f"{host} is unreachable")
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix, progress=True)
    except (OSError, RuntimeError) as e:  # RuntimeError: hash mismatch
        raise _missing(what, name, how, why=f"the download failed ({_first_line(e)})") from None
    return target
