"""LLM judge on a tiny random Llama with a byte-level BPE tokenizer trained offline ('0'…'10' single tokens)."""

import csv
import time

import numpy as np
import pytest
import torch
from checks import assert_one_line_fast

from steercore.core.errors import ConfigError, FileFormatError, MissingWeightsError
from steercore.scorers.judge import RATINGS, Judge, read_template

torch.set_num_threads(1)

CORPUS = ["Rate how relevant the text below is to the concept cats or dogs.",
          "Reply with one number from 0 to 10.", "10", "10 of 10"]
ANSWERS = ["cats are great", "a long answer about many dogs and other things " * 3, "x", "the weather today",
           "I like {braces} and ```fences```"]
CHAT = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


def bpe_tokenizer(corpus, chat_template=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus * 20, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")
    if chat_template:
        tok.chat_template = chat_template
    return tok


def tiny_judge(folder, chat_template=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_tokenizer(CORPUS, chat_template)
    # a wide initialisation, so the rating distribution is far from uniform and batching errors would show
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.5)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return tiny_judge(tmp_path_factory.mktemp("judge") / "tiny")


@pytest.fixture(scope="module")
def judge(judge_dir):
    return Judge(judge_dir, batch_size=3, device="cpu", progress=False)


def oracle(judge, answer, concept):
    """p over '0'…'10' from one unpadded forward pass."""
    enc = judge.tokenizer(judge.prompt(answer, concept), return_tensors="pt")
    with torch.no_grad():
        logits = judge.model(**enc).logits[0, -1]
    ids = [judge.tokenizer.convert_tokens_to_ids(r) for r in RATINGS]
    return torch.softmax(logits[ids], -1)


def test_ratings_from_the_eleven_rating_tokens(judge):
    p = judge.probabilities(ANSWERS, "cats")
    assert p.shape == (5, 11) and judge.rate([], "cats") == ([], [])
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
    for i, a in enumerate(ANSWERS):
        torch.testing.assert_close(p[i], oracle(judge, a, "cats"), atol=1e-5, rtol=0)
    assert p.max() > 0.2  # far from uniform: a padding leak would change it
    rating, expected = judge.rate(ANSWERS, "cats")
    assert rating == p.argmax(-1).tolist() and all(0 <= e <= 10 for e in expected)
    np.testing.assert_allclose(expected, (p * torch.arange(11.0)).sum(-1).numpy(), atol=1e-5)


def test_left_padded_batches_equal_single_prompts(judge):
    batched = judge.probabilities(ANSWERS, "dogs")
    judge.batch_size = 1
    try:
        alone = judge.probabilities(ANSWERS, "dogs")
    finally:
        judge.batch_size = 3
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    assert judge.tokenizer.padding_side == "left"


def test_score_is_argmax_by_default_or_expectation(judge, judge_dir):
    rating, expected = judge.rate(ANSWERS[:2], "cats")
    assert judge.score(ANSWERS[:2], "cats") == [float(r) for r in rating]
    soft = Judge(judge_dir, reduce="expected", device="cpu", progress=False)
    np.testing.assert_allclose(soft.score(ANSWERS[:2], "cats"), expected, atol=1e-6)
    with pytest.raises(ConfigError):
        Judge(judge_dir, reduce="mean", progress=False)


def test_prompt_template_file_and_chat_template(judge, tmp_path):
    system, user = read_template()
    assert "{answer}" in user and "{concept}" in user and system
    text = judge.prompt("I like {braces}", "cats")
    assert "I like {braces}" in text and '"cats"' in text and "{concept}" not in text
    (tmp_path / "t.txt").write_text("[user]\nIs this about {concept}? {answer}\n")
    custom = Judge(judge.name, template=tmp_path / "t.txt", device="cpu", progress=False)
    assert custom.prompt("yes", "dogs") == "Is this about dogs? yes\n"
    (tmp_path / "bad.txt").write_text("[user]\nRate {concept}\n")
    with pytest.raises(FileFormatError, match="answer"):
        read_template(tmp_path / "bad.txt")
    chat = Judge(tiny_judge(tmp_path / "chat", CHAT), device="cpu", progress=False)
    text = chat.prompt("meow", "cats")
    assert text.startswith("<s>system\n") and text.endswith("<s>assistant\n") and "meow" in text
    p = chat.probabilities(["meow", "a much longer answer here"], "cats")
    assert p.shape == (2, 11) and torch.isfinite(p).all()


def test_multi_token_ratings_are_refused(judge_dir, tmp_path):
    tok = bpe_tokenizer(["Rate the text about cats.", "0 1 2 3 4 5 6 7 8 9"])  # no '10' merge
    assert len(tok.encode("10", add_special_tokens=False)) == 2
    import shutil

    shutil.copytree(judge_dir, tmp_path / "j")
    for f in (tmp_path / "j").glob("tokenizer*"):
        f.unlink()
    tok.save_pretrained(tmp_path / "j")
    with pytest.raises(ConfigError, match="'10' is 2 tokens"):
        Judge(tmp_path / "j", device="cpu", progress=False)


def test_offline_without_the_default_judge(no_caches):  # noqa: F811
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        Judge()
    assert_one_line_fast(e, t, "meta-llama/Llama-3.1-8B-Instruct", "hf download meta-llama/Llama-3.1-8B-Instruct")
