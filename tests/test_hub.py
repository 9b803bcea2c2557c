"""steercore.hub: weights and data sets found locally first; one line naming the download when they are not."""

import time

import pytest

from checks import assert_one_line_fast
from steercore.core.errors import MissingWeightsError
from steercore.hub import hub_file, hub_snapshot, url_file


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
