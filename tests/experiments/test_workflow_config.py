"""config/config.yaml: checked by steercore at parse time, every mistake on its own line, defaults filled."""

import math

import pytest

from steercore.experiments.workflow_config import check_config, config_mistakes, load_presets


def test_defaults_are_filled_and_a_good_config_passes():
    config = {"experiments": ["ci"]}
    assert config_mistakes(config) == []
    assert config == {"experiments": ["ci"], "device": "auto", "threads": 1, "pack": "auto",
                      "experiments_dir": "config/experiments", "results_dir": "results", "scale": 1, "artefacts": [],
                      "warm_start": True}
    for device in ("cpu", "cuda", "cuda:3", "mps", "auto"):
        assert config_mistakes({"experiments": ["ci"], "device": device}) == []


def test_every_mistake_is_one_line_of_its_own():
    config = {"experiments": ["ci", "bad name"], "device": "cuda ; ls", "threads": math.nan, "extra": 1}
    mistakes = config_mistakes(config)
    assert sorted(m.split(": ")[1] for m in mistakes) == ["(top level)", "device", "experiments.1", "threads"]
    assert all(m.startswith("config/config.yaml: ") and "\n" not in m for m in mistakes)
    with pytest.raises(SystemExit) as err:
        check_config(config)
    assert err.value.code.count("\n") == 3 and err.value.code.count("Steerflow config error: ") == 4


def test_presets_answer_unknown_names_with_one_line():
    presets = load_presets(["ci"])
    assert presets["ci"].name == "ci"
    with pytest.raises(SystemExit, match="no experiment preset 'typo'"):
        presets["typo"]
