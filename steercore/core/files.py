"""Statistics files: safetensors with provenance metadata, written atomically, checked when loaded.

Layout of one file: for each (step, site) the tensors `{site}@{step}/n` (int64 []), `{site}@{step}/mean`
(float64 [D]) and, for neutral statistics, `{site}@{step}/scatter` (float64 [D, D], so shards merge
exactly). The metadata (all strings) says what the file is: format, kind, model, sites (JSON site → D),
steps, aggregation, precision (of the batch products), samples, source, concept, steercore version, extra (JSON).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from steercore.core import __version__
from steercore.core.errors import DiskFullError, FileFormatError, ShapeMismatchError
from steercore.core.stats import ActivationStats, Moments

FORMAT = "steercore.core.stats/1"
_META_KEYS = ("model", "source", "concept", "samples")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to `path`; on success it is renamed onto `path` (on error, removed).

    Readers therefore see either the old file or the complete new one, never a truncated one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temporary(path, suffix or path.suffix)
    except OSError as e:
        raise _disk_error(path, e) or e
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        full = _disk_error(path, e) if isinstance(e, Exception) else None
        if full is not None:
            raise full from None
        raise


def _new_temporary(path: Path, suffix: str) -> Path:
    """Create `.<name>.<random><suffix>` next to `path`, exclusively, with the mode open() gives a new file
    (0666 less the umask; mkstemp's 0600 would leave results unreadable to the group on shared storage)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(path))


# A full disk, a file-size limit or a quota: the user frees space and reruns; the old file (if any) is intact.
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _disk_error(path: Path, e: Exception) -> "DiskFullError | None":
    """A DiskFullError for an OSError, or a writer's own error that wraps one (safetensors says "os error 28")."""
    code = getattr(e, "errno", None)
    if code is None:
        m = re.search(r"os error (\d+)", str(e))
        code = int(m.group(1)) if m else None
    if code not in _FULL:
        return None
    return DiskFullError(f"{path}: cannot write it ({os.strerror(code)}); nothing was written, free space "
                         "and rerun the same command")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _name(step: int, site: str, what: str) -> str:
    return f"{site}@{step}/{what}"


def save_stats(stats: ActivationStats, path: str | os.PathLike) -> None:
    """Write `stats` to `path` (safetensors, float64, on the CPU), atomically."""
    stats.flush()
    tensors = {}
    for (step, site), m in sorted(stats.moments.items()):
        _check_values(path, step, site, m, "the activations were not finite (a float16 overflow? try "
                      "dtype float32); nothing was written")
        tensors[_name(step, site, "n")] = torch.tensor(m.n, dtype=torch.int64)
        tensors[_name(step, site, "mean")] = m.mean.detach().to("cpu", torch.float64).contiguous()
        if m.track_cov:
            tensors[_name(step, site, "scatter")] = m.scatter.detach().to("cpu", torch.float64).contiguous()
    meta = {
        "format": FORMAT,
        "kind": stats.kind,
        "aggregation": stats.aggregation,
        "precision": stats.precision,
        "sites": json.dumps(stats.sites),
        "steps": json.dumps(stats.steps),
        "steercore_version": __version__,
        "extra": json.dumps({k: v for k, v in stats.meta.items() if k not in _META_KEYS}, default=str),
    }
    meta.update({k: str(stats.meta[k]) for k in _META_KEYS if k in stats.meta})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        _canonical_header(tmp)


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, in place. safetensors serialises the metadata from a
    hash map, so the same statistics would otherwise give different bytes in every process, and a rerun
    after an interruption could not be byte-identical to an uninterrupted run."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")  # header length; the header is JSON padded with spaces
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > n:  # cannot happen for the same content; keep the library's bytes if it ever does
            return
        f.seek(8)
        f.write(text.ljust(n, b" "))


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a statistics file, or one clear FileFormatError."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such statistics file; run the step that writes it")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for truncated/garbage headers
        raise FileFormatError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]}); "
                              "delete it and rerun the step that writes it") from None
    if meta.get("format") != FORMAT:
        raise FileFormatError(f"{path}: not a steercore statistics file (format={meta.get('format')!r})")
    return meta


def load_stats(path: str | os.PathLike, *, kind: str | None = None, expect_sites: dict[str, int] | None = None,
               model_name: str = "the model") -> ActivationStats:
    """Read a statistics file. With `expect_sites` (site → D of the model it will be applied to), refuse a
    file that lacks a site or has another dimension there, naming the site and both shapes."""
    path = Path(path)
    meta = read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise FileFormatError(f"{path}: holds {meta['kind']} statistics, expected {kind}")
    sites = json.loads(meta["sites"])
    if expect_sites is not None:
        for site, dim in expect_sites.items():
            if site not in sites:
                raise ShapeMismatchError(f"{path}: has no site '{site}' that {model_name} steers "
                                         f"(file sites: {', '.join(sites) or 'none'})")
            if sites[site] != dim:
                raise ShapeMismatchError(f"{path}: site '{site}' is [{sites[site]}] in the file "
                                         f"but [{dim}] in {model_name}")
    # files from before the precision was recorded were all accumulated with float32 batch products
    stats = ActivationStats(meta["kind"], meta["aggregation"], precision=meta.get("precision", "float32"))
    stats.meta = {k: meta[k] for k in _META_KEYS if k in meta}
    stats.meta.update(json.loads(meta.get("extra", "{}")))
    stats.meta["steercore_version"] = meta.get("steercore_version")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            for step in json.loads(meta["steps"]):
                for site, dim in sites.items():
                    if _name(step, site, "n") not in names:
                        continue
                    m = Moments(dim, stats.track_cov, stats.precision)
                    m.n = int(f.get_tensor(_name(step, site, "n")))
                    m.mean = f.get_tensor(_name(step, site, "mean"))
                    if m.track_cov:
                        m.scatter = f.get_tensor(_name(step, site, "scatter"))
                    if m.mean.shape != (dim,) or (m.track_cov and m.scatter.shape != (dim, dim)):
                        raise FileFormatError(f"{path}: tensors of site '{site}' step {step} do not match "
                                              f"its declared dimension {dim}")
                    _check_values(path, step, site, m)
                    stats.moments[(step, site)] = m
    except FileFormatError:
        raise
    except Exception as e:
        raise FileFormatError(f"{path}: corrupt tensor data ({str(e).splitlines()[0]}); "
                              "delete it and rerun the step that writes it") from None
    return stats


def _check_values(path, step: int, site: str, m: Moments, fix: str = "delete the file and rerun the step "
                  "that writes it") -> None:
    """NaN/inf (or a negative count) would give NaN images or an eigh failure later: name the tensor. Checked
    both before writing (so non-finite activations stop the job that saw them) and after reading."""
    if m.n < 0:
        raise FileFormatError(f"{path}: tensor '{_name(step, site, 'n')}' is a negative sample count ({m.n}); {fix}")
    tensors = [("mean", m.mean)] + ([("scatter", m.scatter)] if m.track_cov else [])
    for what, t in tensors:
        bad = ~torch.isfinite(t) if t is not None else torch.zeros(1, dtype=torch.bool)
        if bad.any():
            raise FileFormatError(f"{path}: tensor '{_name(step, site, what)}' has {int(bad.sum())} non-finite "
                                  f"entries (NaN/inf) of {t.numel()}; {fix}")


def merge_stats_files(paths) -> ActivationStats:
    """Merge statistics shards (same kind, aggregation and model) into one, exactly; sample counts add up."""
    parts = [load_stats(p) for p in paths]
    merged = parts[0]
    for p, part in zip(paths[1:], parts[1:]):
        if part.meta.get("model") != merged.meta.get("model"):
            raise FileFormatError(f"{p}: model {part.meta.get('model')} differs from {merged.meta.get('model')} "
                                  f"of {paths[0]}; shards must come from one model")
        merged = merged.merge(part)
    merged.meta["samples"] = sum(int(p.meta.get("samples", 0)) for p in parts)
    merged.meta.pop("shard", None)
    merged.meta["shards"] = len(parts)
    return merged
