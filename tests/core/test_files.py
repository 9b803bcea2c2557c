"""Statistics files: safetensors round trip with metadata, and one-line errors for bad files."""

import json

import pytest
import torch
from safetensors import safe_open

from steercore import ActivationStats, FileFormatError, ShapeMismatchError, load_stats, save_stats
from steercore.core.files import atomic_path


def make_stats(kind="neutral"):
    st = ActivationStats(kind, "all" if kind == "neutral" else "average",
                         meta={"model": "testbed-t2i", "source": "shapes:neutral", "concept": "red", "samples": 12,
                               "seed": 0})
    g = torch.Generator().manual_seed(0)
    for step in (0, 1):
        st.add(step, "down.0", torch.randn(4, 9, 8, generator=g))
        st.add(step, "up.1", torch.randn(4, 9, 16, generator=g))
    return st


@pytest.mark.parametrize("kind", ["neutral", "concept"])
def test_round_trip_keeps_tensors_and_metadata(tmp_path, kind):
    st = make_stats(kind)
    path = tmp_path / "stats.safetensors"
    save_stats(st, path)
    back = load_stats(path, kind=kind, expect_sites={"down.0": 8, "up.1": 16})
    assert back.kind == kind and back.sites == st.sites and back.steps == [0, 1]
    for key, m in st.moments.items():
        assert back.moments[key].n == m.n
        assert torch.equal(back.moments[key].mean, m.mean)
        if kind == "neutral":
            assert torch.equal(back.moments[key].scatter, m.scatter)
    assert back.meta["model"] == "testbed-t2i" and back.meta["seed"] == 0 and back.meta["samples"] == "12"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["sites"]) == {"down.0": 8, "up.1": 16}
    assert {"format", "kind", "model", "steps", "aggregation", "samples", "source", "steercore_version"} <= set(meta)
    assert not list(tmp_path.glob(".stats*"))  # no temporary file left behind


def test_mismatched_site_shape_is_refused_naming_site_and_shapes(tmp_path):
    path = tmp_path / "s.safetensors"
    save_stats(make_stats(), path)
    with pytest.raises(ShapeMismatchError) as e:
        load_stats(path, expect_sites={"down.0": 8, "up.1": 1280}, model_name="model 'sdxl'")
    assert str(e.value) == f"{path}: site 'up.1' is [16] in the file but [1280] in model 'sdxl'"
    with pytest.raises(ShapeMismatchError, match="has no site 'mid.0'"):
        load_stats(path, expect_sites={"mid.0": 8})
    with pytest.raises(FileFormatError, match="holds neutral statistics, expected concept"):
        load_stats(path, kind="concept")


def test_truncated_garbage_and_missing_files_give_one_line(tmp_path):
    path = tmp_path / "s.safetensors"
    save_stats(make_stats(), path)
    data = path.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": b"\x00" * 64, "header-only": data[:8]}
    for name, blob in bad.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        with pytest.raises(FileFormatError) as e:
            load_stats(p)
        msg = str(e.value)
        assert "\n" not in msg and str(p) in msg and "rerun the step that writes it" in msg, msg
    with pytest.raises(FileFormatError, match="no such statistics file"):
        load_stats(tmp_path / "absent.safetensors")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(FileFormatError, match="not a steercore statistics file"):
        load_stats(other)


def test_atomic_path_leaves_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_path_gives_the_mode_open_would_give(tmp_path, umask):
    """A written file has the mode open() gives (0666 less the umask), not mkstemp's 0600: results on shared
    storage must be readable as the user's umask allows."""
    import os
    import stat

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "atomic.txt") as tmp:
            tmp.write_text("x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
