"""Presets of a project other than Steerflow (experiments_dir): looked up there first, then among Steerflow's
own; `extends` reaches the shipped presets; relative files are relative to the project of the file naming them."""

import pytest
import yaml

from steercore import ConfigError
from steercore.experiments import preset
from steercore.experiments.preset import STEERFLOW, configure, list_experiments, load_experiment
from steercore.experiments.promptsets import eval_prompts, vector_prompts


@pytest.fixture
def project(tmp_path):
    """A project with its own presets folder (experiments_dir: presets) and prompt file."""
    saved = dict(preset.SETTINGS)
    configure({"experiments_dir": "presets", "results_dir": "out"})
    (tmp_path / "presets").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "red.txt").write_text("a {} circle\n")
    yield tmp_path
    preset.SETTINGS.update(saved)


def write(project, name, **cfg):
    (project / "presets" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))


def test_a_project_preset_extends_a_shipped_one_and_changes_one_key(project):
    write(project, "my_red_blue", extends="ci", strengths=[1, 3])
    exp = load_experiment("my_red_blue", project)
    ci = load_experiment("ci", project)
    assert exp.strengths_of("leace") == [1.0, 3.0]
    assert {k: v for k, v in exp.cfg.items() if k != "strengths"} == {k: v for k, v in ci.cfg.items() if k != "strengths"}
    # the project sees its own presets and Steerflow's, and writes under its results_dir
    assert {"my_red_blue", "ci", "sdxl_dogs_cats", "ci_covsize_n16"} <= set(list_experiments(project))
    assert exp.cov_path().startswith("out/cov/testbed-t2i/") and preset.results_dir(project) == project / "out"


def test_prompt_files_are_relative_to_the_project_of_the_file_that_names_them(project):
    write(project, "mine", extends="sdxl_dogs_cats", prompts={"source": {"file": "prompts/red.txt"}})
    write(project, "theirs", extends="mine", prompts={"unrelated": {"pigs": {"limit": 1}}})
    exp = load_experiment("theirs", project)
    assert exp.root_of("prompts", "source") == project  # named by this project's file
    assert exp.root_of("prompts", "target") == STEERFLOW  # inherited from the shipped preset
    assert exp.root_of("prompts", "unrelated", "pigs") == STEERFLOW  # only its limit changed here
    assert eval_prompts(exp, "dogs") == ["a dog circle"]
    assert eval_prompts(exp, "cats")[0] == "a picture of a cat" and len(eval_prompts(exp, "pigs")) == 1
    assert vector_prompts(exp, "cats")[0] == "a photo of a cat"  # the shipped concept prompts
    write(project, "lost", extends="sdxl_dogs_cats", prompts={"source": {"file": "config/prompts/t2i_eval.txt"}})
    with pytest.raises(ConfigError, match=r"^presets/lost.yaml: prompts.source: prompt file 'config/prompts/t2i_eval.txt' does not exist$"):
        load_experiment("lost", project)  # a project's own relative path never falls back to Steerflow's


def test_a_project_preset_shadows_the_shipped_one_and_may_extend_it(project):
    write(project, "ci", extends="ci", samples_per_prompt=3)  # Steerflow's ci, changed
    assert load_experiment("ci", project)["samples_per_prompt"] == 3
    # the shipped family extending ci now varies the project's ci: a name means one preset everywhere
    assert load_experiment("ci_covsize_n16", project)["samples_per_prompt"] == 3
    write(project, "a", extends="b", seed=1)
    write(project, "b", extends="a", seed=2)
    with pytest.raises(ConfigError, match=r"^presets/a.yaml: extends: cycle a -> b -> a$"):
        list_experiments(project)


def test_an_unknown_parent_names_the_close_presets_of_both_folders(project):
    write(project, "mine", extends="ci_covsize_n1")
    with pytest.raises(ConfigError, match=r"^presets/mine.yaml: extends: unknown preset 'ci_covsize_n1'; did you mean"):
        list_experiments(project)


def test_a_missing_experiments_dir_is_one_line(project):
    configure({"experiments_dir": "nope"})
    with pytest.raises(ConfigError, match=r"nope: no experiments folder; set experiments_dir in the workflow config$"):
        list_experiments(project)
