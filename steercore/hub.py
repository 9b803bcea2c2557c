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
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def _download(fetch: Callable[[bool], str], *, what: str, name: str, how: str, host: str | None = None,
              local_first: bool = True) -> str:
    """Run `fetch(local_files_only)` against the cache, then (if allowed and possible) online."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if local_first:
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
    """A file published at `url` (e.g. a GitHub release): found in the torch hub checkpoint folder (where
    `torch.hub.load_state_dict_from_url` keeps it) or in `search`, else downloaded to the former."""
    import torch

    name = Path(urlparse(url).path).name
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    for folder in [target.parent, *search]:  # the torch hub folder (TORCH_HOME) first
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


# ---------------------------------------------------------------------------------------------- downloads
# What a run will read, declared by the registry, the scorers and the corpora (each knows its own files), so
# that `python -m steercore.experiments.downloads` can list, check and fetch everything a preset needs before
# any job starts.

# Repositories that need an accepted licence (and a token) before anything can be downloaded.
GATED = ("meta-llama/", "black-forest-labs/FLUX.1-dev", "google/gemma-", "laion/relaion2B-en-research")


def is_gated(repo: str) -> bool:
    return any(repo.startswith(g) for g in GATED)


@dataclass(frozen=True)
class Download:
    """One thing read from the Hub (a repository's files) or from a URL (one file into torch hub's folder).

    `include`/`exclude` are huggingface_hub patterns (fnmatch on the repository path; `include` empty: every
    file), `require` the patterns that must each match a cached file (default: `include`); `size` is the
    approximate size in bytes of the included files (from the declaring module's table; the Hub's metadata
    gives the exact figure when online); `gated`: the repository needs an accepted licence and a token.
    """

    what: str
    repo: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    repo_type: str = "model"  # 'model', 'dataset' or 'url'
    variant: str | None = None
    gated: bool = False
    size: int | None = None
    search: tuple[str, ...] = ()  # url files: other folders where the file may already be
    require: tuple[str, ...] | None = None  # patterns that must each match a cached file (default: include)

    def __post_init__(self):
        if self.repo_type != "url" and not self.gated and is_gated(self.repo):
            object.__setattr__(self, "gated", True)

    @property
    def key(self) -> tuple:
        return (self.repo_type, self.repo, self.include, self.exclude)

    @property
    def name(self) -> str:
        return Path(urlparse(self.repo).path).name if self.repo_type == "url" else self.repo

    def target(self) -> Path:
        """Where a url file goes: the torch hub checkpoint folder."""
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / self.name

    def command(self) -> str:
        """The shell command that fetches exactly this."""
        if self.repo_type == "url":
            return f"curl -L --create-dirs -o {self.target()} {self.repo}"
        inc = "".join(f" --include '{p}'" for p in self.include)
        exc = "".join(f" --exclude '{p}'" for p in self.exclude)
        return f"hf download {self.repo}{_repo_flag(self.repo_type)}{inc}{exc}"


def _matches(path: str, patterns: Sequence[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(path, p) for p in patterns)


def cached_snapshot(repo: str, repo_type: str = "model") -> Path | None:
    """The cached snapshot folder of `repo`'s main revision, or None (never touches the network)."""
    from huggingface_hub import constants

    entry = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo.replace('/', '--')}"
    ref = entry / "refs" / "main"
    if ref.is_file():
        snap = entry / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    snaps = sorted((entry / "snapshots").glob("*")) if (entry / "snapshots").is_dir() else []
    return snaps[-1] if len(snaps) == 1 else None


def _snapshot_files(snap: Path) -> list[str]:
    # A symlink whose blob is gone (an interrupted or pruned download) is not a file.
    return sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())


def missing_parts(d: Download) -> list[str]:
    """What of `d` is not on this machine (empty when everything is): the patterns that match no cached
    file, the shards a cached index names but the cache lacks, pipeline components without weights."""
    if d.repo_type == "url":
        found = [Path(f) / d.name for f in (d.target().parent, *d.search) if (Path(f) / d.name).is_file()]
        return [] if found else [str(d.target())]
    snap = cached_snapshot(d.repo, d.repo_type)
    if snap is None:
        return ["not in the cache"]
    files = [f for f in _snapshot_files(snap) if not _matches(f, d.exclude) and _matches(f, d.include or ["*"])]
    required = d.include if d.require is None else d.require
    out = [p for p in required if not any(_matches(f, [p]) for f in files)]
    for index in (f for f in files if ".safetensors.index" in f and f.endswith(".json")):
        try:
            shards = set(json.loads((snap / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            out.append(f"{index} (unreadable)")
            continue
        folder = str(Path(index).parent)
        out += sorted(str(Path(folder) / s) for s in shards
                      if str(Path(folder) / s).removeprefix("./") not in files)
    if "model_index.json" in files:  # a diffusers pipeline: every module folder needs its weights
        suffix = f".{d.variant}.safetensors" if d.variant else ".safetensors"
        for comp in sorted({f.split("/")[0] for f in files if f.endswith("/config.json")}):
            weights = [f for f in files if f.startswith(f"{comp}/") and f.endswith(suffix)
                       and (d.variant or f.count(".") == 1)]
            if not weights:
                out.append(f"{comp}/*{suffix}")
    return out


def check_access(d: Download) -> str | None:
    """Online: None when this token may download `d`, else why not (gated, missing, failing)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if d.repo_type == "url":
        return None if reachable(urlparse(d.repo).hostname or "") else f"{urlparse(d.repo).hostname} is unreachable"
    try:
        HfApi().auth_check(d.repo, repo_type=d.repo_type)
    except GatedRepoError:
        return ("gated: accept its licence on the Hub, then `hf auth login` or set HF_TOKEN")
    except RepositoryNotFoundError:
        return "the Hub has no such repository (or it is private and HF_TOKEN cannot see it)"
    except OSError as e:
        return f"the Hub did not answer ({_first_line(e)})"
    return None


def remote_size(d: Download) -> int | None:
    """Online: the exact size in bytes of the files `d` would download (None when unknown)."""
    from huggingface_hub import HfApi

    if d.repo_type == "url":
        return None
    try:
        info = HfApi().repo_info(d.repo, repo_type=d.repo_type, files_metadata=True)
    except OSError:
        return None
    return sum(s.size or 0 for s in info.siblings or []
               if _matches(s.rfilename, d.include or ["*"]) and not _matches(s.rfilename, d.exclude))


def fetch(d: Download) -> Path:
    """Download exactly the files of `d` (what is cached already is not downloaded again)."""
    from huggingface_hub import snapshot_download

    if d.repo_type == "url":
        return url_file(d.repo, what=d.what, search=d.search)
    if not missing_parts(d):
        return cached_snapshot(d.repo, d.repo_type)
    # Not local_first: a partial snapshot folder would satisfy snapshot_download(local_files_only=True).
    return Path(_download(
        lambda local: snapshot_download(d.repo, repo_type=d.repo_type, allow_patterns=list(d.include) or None,
                                        ignore_patterns=list(d.exclude) or None, local_files_only=local),
        what=d.what, name=f"'{d.repo}'", how=d.command(), local_first=False))
