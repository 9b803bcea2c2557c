"""The one place that finds weights and data sets: a local folder or file, the Hugging Face cache, the Hub.

Everything is looked up locally first, so a cached model never touches the network. Only when nothing is
cached, HF_HUB_OFFLINE is unset and the host answers one short TCP connect is anything downloaded (this
avoids huggingface_hub's retry loop, about 25 s per file, on machines without network). Whatever is missing
raises one `MissingWeightsError` line in one style:

    <what>: no local copy of <name> and <why>; download it first with `<exact command>` (or pass a local ...)

May import: steercore.core, huggingface_hub (lazily), torch.hub for files published at a URL.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from steercore.core.errors import MissingWeightsError

HUB_HOST = "huggingface.co"
# Files a transformers model needs; skips duplicate formats (original/*.pth of Llama is 16 GB).
TRANSFORMERS_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def offline() -> bool:
    """True when HF_HUB_OFFLINE is set (read now, not at import, so tests and scripts can set it late)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}")).hostname or HUB_HOST


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


def missing(what: str, name: str, how: str, why: str | None = None) -> MissingWeightsError:
    """The one message for anything that is neither here nor downloadable."""
    if why is None:
        why = "HF_HUB_OFFLINE is set" if offline() else "the network is unreachable"
    return MissingWeightsError(f"{what}: no local copy of {name} and {why}; download it first with `{how}` "
                               "(or pass a local file/folder)")


def _download(fetch: Callable[[bool], str], *, what: str, name: str, how: str, host: str | None = None) -> str:
    """Run `fetch(local_files_only)` against the cache, then (if allowed and possible) online."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return fetch(True)
    except (LocalEntryNotFoundError, FileNotFoundError):
        pass
    host = host or hub_host()
    if offline():
        raise missing(what, name, how) from None
    if not reachable(host):
        raise missing(what, name, how, why=f"{host} is unreachable") from None
    try:
        return fetch(False)
    except GatedRepoError:
        raise missing(what, name, how, why="the repository is gated (accept its licence on the Hub and run "
                                           "`hf auth login`, or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise missing(what, name, how, why="the Hub has no such repository") from None
    except OSError as e:  # huggingface_hub's HTTP and cache errors derive from OSError
        raise missing(what, name, how, why=f"the download failed ({_first_line(e)})") from None


def _repo_flag(repo_type: str) -> str:
    return " --repo-type dataset" if repo_type == "dataset" else ""


def hub_file(repo: str, filename: str, *, what: str, repo_type: str = "model") -> Path:
    """Path of one file of a Hub repository, from the cache or downloaded."""
    from huggingface_hub import hf_hub_download

    return Path(_download(
        lambda local: hf_hub_download(repo, filename, repo_type=repo_type, local_files_only=local),
        what=what, name=f"'{repo}' ({filename})", how=f"hf download {repo} {filename}{_repo_flag(repo_type)}"))


def hub_files(repo: str, pattern: str, *, what: str, repo_type: str = "dataset") -> list[Path]:
    """The files of a Hub repository matching `pattern` (e.g. a data set's parquet shards), sorted."""
    from huggingface_hub import snapshot_download

    folder = Path(_download(
        lambda local: snapshot_download(repo, repo_type=repo_type, allow_patterns=[pattern], local_files_only=local),
        what=what, name=f"'{repo}' ({pattern})",
        how=f"hf download {repo}{_repo_flag(repo_type)} --include '{pattern}'"))
    files = sorted(folder.glob(pattern))
    if not files:
        raise MissingWeightsError(f"{what}: '{repo}' has no file matching {pattern} in {folder}")
    return files


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

    def fetch(local: bool) -> str:
        patterns = allow_patterns
        if not local and patterns == TRANSFORMERS_FILES:
            from huggingface_hub import list_repo_files

            # Older repositories have only pytorch_model.bin; newer ones both (then skip the .bin copy).
            if not any(f.endswith(".safetensors") for f in list_repo_files(repo)):
                patterns = [*patterns, "*.bin"]
        return snapshot_download(repo, allow_patterns=patterns, local_files_only=local)

    return Path(_download(fetch, what=what, name=f"'{repo}'", how=how))


def model_source(hub_id: str, *, what: str) -> str:
    """A model's cached snapshot folder, or its Hub id when it is not cached and can be downloaded: then
    `from_pretrained` fetches exactly the files (and weight variant) it reads, not the whole repository."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(hub_id, local_files_only=True)
    except Exception:  # not (fully) cached: LocalEntryNotFoundError and friends
        pass
    how = f"hf download {hub_id}"
    if offline():
        raise missing(what, f"'{hub_id}'", how)
    if not reachable(hub_host()):
        raise missing(what, f"'{hub_id}'", how, why=f"{hub_host()} is unreachable")
    return hub_id


def url_file(url: str, *, what: str, search: Sequence[str | os.PathLike] = (),
             hash_prefix: str | None = None) -> Path:
    """A file published at `url` (e.g. a GitHub release): found in `search` or the torch hub checkpoint
    folder (where `torch.hub.load_state_dict_from_url` keeps it), else downloaded there."""
    import torch

    name = Path(urlparse(url).path).name
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    for folder in [*search, target.parent]:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    how = f"curl -L --create-dirs -o {target} {url}"
    if offline():
        raise missing(what, name, how)
    host = urlparse(url).hostname or ""
    if not reachable(host):
        raise missing(what, name, how, why=f"{host} is unreachable")
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix, progress=True)
    except (OSError, RuntimeError) as e:  # RuntimeError: hash mismatch
        raise missing(what, name, how, why=f"the download failed ({_first_line(e)})") from None
    return target
