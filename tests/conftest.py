"""Test-wide settings: offline Hugging Face hub, one CPU thread, and a session cache of tiny models."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A folder where tests/tiny_models.py saves each tiny model once per test session."""
    return tmp_path_factory.mktemp("tiny_models")
