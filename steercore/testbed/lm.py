"""testbed-lm: a tiny `LlamaForCausalLM` trained on the topics world, with an offline word-level chat tokenizer.

The steering sites are those of Llama-2 (`layers.{i}.self_attn`, `.mlp`, `.residual`). Prompts use the
tokenizer's chat template: `<s> <|user|> {question} <|assistant|>`; the answer ends with `</s>`.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from steercore.core.errors import MissingWeightsError
from steercore.testbed.topics import VOCABULARY

WEIGHTS = Path(__file__).resolve().parent / "weights"

MAX_LENGTH = 96
SPECIAL = ("<pad>", "<unk>", "<s>", "</s>")
ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
#: Jinja chat template: one marker per role, then the text; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' ' }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the topics-world vocabulary (plus special and role tokens), built offline."""
    words = list(SPECIAL) + list(ROLES) + list(VOCABULARY)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=MAX_LENGTH, pad_token="<pad>",
                                  unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  additional_special_tokens=list(ROLES))
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"  # generation appends on the right
    return tok


def build_model(tokenizer: PreTrainedTokenizerFast, hidden: int = 64, layers: int = 4) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=MAX_LENGTH, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def chat_prompt(tokenizer: PreTrainedTokenizerFast, instruction: str, system: str | None = None) -> str:
    """The generation prompt of one user turn (string form of the chat template)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def training_text(tokenizer: PreTrainedTokenizerFast, instruction: str, answer: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": instruction},
                                          {"role": "assistant", "content": answer}], tokenize=False)


def load_lm(folder: str | Path | None = None) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """The shipped testbed-lm (or the one in `folder`) and its tokenizer, model in eval mode."""
    from transformers import AutoTokenizer

    folder = Path(folder) if folder is not None else WEIGHTS / "lm"
    if not (folder / "config.json").is_file():
        raise MissingWeightsError(f"testbed-lm weights are missing in {folder}; run "
                                  f"workflow_scripts/train_testbed.py lm --out {folder}")
    return LlamaForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
