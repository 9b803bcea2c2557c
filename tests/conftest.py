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


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Offline, with empty Hugging Face and torch hub caches (whatever this machine has cached)."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture(scope="session")
def standin_hub(tmp_path_factory):
    """Tiny random-init models and data sets under the real repo ids (tests/standin_hub.py), built once per
    session; `standin_hub.env()` are the variables that make a process find them offline."""
    from standin_hub import build_standin_hub

    return build_standin_hub(tmp_path_factory.mktemp("standin_hub"))


@pytest.fixture
def standins(standin_hub, monkeypatch):
    """This process finds the stand-ins (and nothing else) as its Hugging Face and torch hub caches."""
    import huggingface_hub.constants as hc

    for k, v in standin_hub.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(standin_hub.hf_cache))
    return standin_hub
