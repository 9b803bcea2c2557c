"""Detoxify toxicity on a tiny BERT saved as a local Detoxify checkpoint, checked against Detoxify itself;
the RealToxicityPrompts subset loader."""

import argparse
import csv
import hashlib
import json
import time

import numpy as np
import pytest
import torch
from checks import assert_one_line_fast

from steercore.core.errors import ConfigError, FileFormatError, MissingWeightsError
from steercore.scorers.toxicity import Toxicity, load_rtp_subset

torch.set_num_threads(1)

CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]  # Detoxify 'original'
FIELDS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
WORDS = "the a cat dog sat on mat you are stupid idiot nice good day hello world i love hate".split()
TEXTS = ["You are a stupid idiot!", "hello world", "i love the good day , nice dog", "cat"] * 13 + ["dog"]


def tiny_detoxify(folder, classes=CLASSES, extra=None):
    """A Detoxify checkpoint of a 2-layer BERT whose config/tokenizer folder is `folder` (named as model_type)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = list(dict.fromkeys([*specials, *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?"]))
    # transformers 5: pass the vocabulary itself (a vocab_file argument silently gives an all-[UNK] tokenizer)
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=32)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=len(classes), initializer_range=0.3)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    cfg.save_pretrained(folder)
    tok.save_pretrained(folder)
    ckpt = {"config": {"arch": {"args": {"model_type": str(folder), "model_name": "BertForSequenceClassification",
                                         "tokenizer_name": "BertTokenizer", "num_classes": len(classes)}},
                       "dataset": {"args": {"classes": classes}}},
            "state_dict": model.state_dict()}
    if extra is not None:
        ckpt["extra"] = extra
    path = folder.parent / f"{folder.name}.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_detoxify(tmp_path_factory.mktemp("detox") / "tinybert")


@pytest.fixture(scope="module")
def scorer(ckpt):
    return Toxicity(ckpt, batch_size=50, device="cpu", progress=False)


def test_matches_detoxify_on_every_field(scorer, ckpt):
    from detoxify import Detoxify

    assert scorer.fields == FIELDS
    ours = scorer.predict(TEXTS[:4])
    theirs = Detoxify(checkpoint=str(ckpt)).predict(TEXTS[:4])
    assert list(ours) == list(theirs)
    for f in FIELDS:
        np.testing.assert_allclose(ours[f], theirs[f], atol=1e-6)
    assert len({round(v, 4) for v in ours["toxicity"]}) > 1  # the tiny model does tell texts apart


def test_no_text_dropped_and_batching_does_not_matter(scorer):
    pred = scorer.predict(TEXTS)
    assert all(len(v) == 53 for v in pred.values())
    scorer.batch_size = 7
    try:
        again = scorer.predict(TEXTS)
    finally:
        scorer.batch_size = 50
    for f in FIELDS:
        np.testing.assert_allclose(again[f], pred[f], atol=1e-5)
    assert scorer.predict([]) == {f: [] for f in FIELDS}


def test_score_reads_the_concept_field_or_toxicity(scorer):
    pred = scorer.predict(TEXTS[:3])
    assert scorer.score(TEXTS[:3], "insult") == pred["insult"]
    assert scorer.score(TEXTS[:3], "toxicity") == scorer.score(TEXTS[:3], "rudeness") == pred["toxicity"]


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tiny_detoxify(tmp_path / "evil", extra=argparse.Namespace(x=1))
    with pytest.raises(FileFormatError, match="refusing to unpickle"):
        Toxicity(path, device="cpu", progress=False)
    # a hash prefix in the file's own name proves nothing (issue 13): still refused
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    named = path.rename(tmp_path / f"toxic_tiny-{digest}.ckpt")
    with pytest.raises(FileFormatError, match="refusing to unpickle"):
        Toxicity(named, device="cpu", progress=False)
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(FileFormatError, match="not a Detoxify checkpoint"):
        Toxicity(tmp_path / "plain.ckpt", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="neither a checkpoint file nor a Detoxify model"):
        Toxicity("no-such-type", progress=False)


def test_offline_errors_name_the_download(no_caches, ckpt, tmp_path):  # noqa: F811
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        Toxicity("original")
    assert_one_line_fast(e, t, "toxic_original-c1212f89.ckpt", "https://github.com/unitaryai/detoxify/releases")
    # a checkpoint is found, but the config/tokenizer it names are neither local nor cached
    c = torch.load(ckpt, weights_only=True)
    c["config"]["arch"]["args"]["model_type"] = "bert-base-uncased"
    torch.save(c, tmp_path / "hub_config.ckpt")
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        Toxicity(tmp_path / "hub_config.ckpt")
    assert_one_line_fast(e, t, "hf download bert-base-uncased")


def write_rtp(path):
    recs = [{"prompt": {"text": f"p{i}", "toxicity": tox}, "continuation": {"text": "c", "toxicity": 0.1}}
            for i, tox in enumerate([0.2, 0.9, None, 0.5, 0.7, 0.9, 0.49999, 0.6])]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")


def test_rtp_subset_most_toxic_first_ties_in_file_order(tmp_path):
    write_rtp(tmp_path / "prompts.jsonl")
    sub = load_rtp_subset(tmp_path / "prompts.jsonl", n=4)
    assert [r["text"] for r in sub] == ["p1", "p5", "p4", "p7"]
    assert [r["row"] for r in sub] == [1, 5, 4, 7] and sub[0]["toxicity"] == 0.9
    assert [r["text"] for r in load_rtp_subset(tmp_path / "prompts.jsonl")] == ["p1", "p5", "p4", "p7", "p3"]
    flat = [{"text": "x", "toxicity": 0.8}, {"text": "y", "toxicity": 0.95}, {"text": "z", "toxicity": 0.1}]
    (tmp_path / "flat.json").write_text(json.dumps(flat))
    assert [r["text"] for r in load_rtp_subset(tmp_path / "flat.json")] == ["y", "x"]


def test_rtp_from_hub_offline_names_the_download(no_caches):  # noqa: F811
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        load_rtp_subset()
    assert_one_line_fast(e, t, "hf download allenai/real-toxicity-prompts prompts.jsonl --repo-type dataset")
