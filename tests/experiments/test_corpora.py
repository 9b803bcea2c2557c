"""Neutral corpora: file formats, contiguous shards, and one-line errors."""

import json
import time

import pytest

from steercore import ConfigError, MissingWeightsError
from steercore.experiments.corpora import neutral_texts
from steercore.models.prompting import split_chat_text


def test_shards_are_contiguous_blocks_of_the_corpus():
    whole = neutral_texts("testbed-shapes", 10, seed=3)
    parts = [neutral_texts("testbed-shapes", 10, seed=3, shard=k, shards=3) for k in range(3)]
    assert [len(p) for p in parts] == [3, 4, 3] and sum(parts, []) == whole


def test_local_files_of_every_format(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.csv").write_text("case_number,prompt\n1,a horse\n2,a barn\n")
    (tmp_path / "c.json").write_text(json.dumps([{"instruction": "Name a colour.", "input": "", "output": "Red."}]))
    assert neutral_texts("file:a.txt", 2, root=tmp_path) == ["one", "two"]
    assert neutral_texts("file:b.csv", 2, root=tmp_path) == ["a horse", "a barn"]
    q, a = split_chat_text(neutral_texts("file:c.json", 1, root=tmp_path)[0])
    assert (q, a) == ("Name a colour.", "Red.")
    with pytest.raises(ConfigError, match="has 2 texts, fewer than the 5 asked for"):
        neutral_texts("file:a.txt", 5, root=tmp_path)
    with pytest.raises(ConfigError, match="unknown corpus 'laion5b'"):
        neutral_texts("laion5b", 5)


def test_hub_corpus_offline_fails_at_once_with_one_line():
    t = time.time()
    with pytest.raises(MissingWeightsError) as e:
        neutral_texts("relaion", 10)
    assert time.time() - t < 10
    msg = str(e.value)
    assert "\n" not in msg and "hf download laion/relaion2B-en-research --repo-type dataset" in msg
