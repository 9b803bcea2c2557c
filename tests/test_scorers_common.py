"""Scorer plumbing: device choice, batching without dropped items, atomic TSV tables, offline weight errors."""

import csv
import time

import pytest
import torch

from steercore.errors import MissingWeightsError
from steercore.scorers.common import batched, choose_device, hub_file, hub_snapshot, url_file, write_tsv

torch.set_num_threads(1)


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Offline, with empty Hugging Face and torch hub caches (whatever this machine has cached)."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_device_explicit_wins_and_auto_follows_cuda():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(torch.device("meta")) == torch.device("meta")
    assert choose_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_batched_keeps_the_remainder():
    chunks = list(batched(list(range(53)), 50, "x", progress=False))
    assert [len(c) for c in chunks] == [50, 3]
    assert sum(chunks, []) == list(range(53))
    assert list(batched([], 4, "x", progress=False)) == []


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_write_tsv_header_rows_and_atomic(tmp_path):
    path = tmp_path / "sub" / "t.tsv"
    write_tsv(path, ("item", "score", "note"), [("a", 0.1, None), ("b", 2, "x y")])
    assert read_tsv(path) == [["item", "score", "note"], ["a", "0.1", ""], ["b", "2", "x y"]]
    with pytest.raises(ValueError):
        write_tsv(path, ("item", "score", "note"), [("c", 1.0)])
    # a failed write leaves the previous table and no temporary files
    assert read_tsv(path)[1] == ["a", "0.1", ""]
    assert [p.name for p in path.parent.iterdir()] == ["t.tsv"]


def assert_one_line_fast(excinfo, started, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and time.monotonic() - started < 5
    for n in needles:
        assert n in msg, msg


def test_offline_hub_errors_name_the_download(no_caches):
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        hub_snapshot("steerflow-tests/no-such-model", what="test scorer")
    assert_one_line_fast(e, t, "test scorer", "hf download steerflow-tests/no-such-model", "HF_HUB_OFFLINE")
    with pytest.raises(MissingWeightsError) as e:
        hub_file("steerflow-tests/data", "x.jsonl", what="data", repo_type="dataset")
    assert_one_line_fast(e, t, "hf download steerflow-tests/data x.jsonl --repo-type dataset")
    with pytest.raises(MissingWeightsError) as e:
        hub_snapshot(no_caches / "missing-folder", what="test scorer")
    assert_one_line_fast(e, t, "does not exist")


def test_local_folder_and_url_file_found_without_network(no_caches, tmp_path):
    assert hub_snapshot(tmp_path, what="x") == tmp_path
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        url_file("https://example.org/w/model-abc.pt", what="test scorer")
    assert_one_line_fast(e, t, "model-abc.pt", "curl -L", "https://example.org/w/model-abc.pt")
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "model-abc.pt").write_bytes(b"x")
    assert url_file("https://example.org/w/model-abc.pt", what="t", search=[tmp_path / "here"]).read_bytes() == b"x"
