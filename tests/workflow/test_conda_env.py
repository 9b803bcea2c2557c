"""envs/steerflow.yaml: the pins of pyproject.toml, and an environment built from it runs a rule's script with
steercore taken from the workflow folder (no editable install).

No conda channel is reachable offline, so the second test builds a plain venv from the env file's pip section:
its site-packages holds links to exactly the pinned distributions and what they require (taken from this
machine's installed copies, each checked against its pin), nothing else, and not steercore.
"""

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "envs" / "steerflow.yaml"


def env_pins() -> tuple[list, list[str]]:
    deps = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return conda, pip


def test_env_file_pins_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, pip = env_pins()
    assert pip == project["dependencies"]  # same pins, same order: a diff shows the drift at once
    assert not [p for p in pip if p.startswith(("-e", ".", "/")) or "file:" in p]  # nothing path-relative
    python = next(d for d in conda if d.startswith("python"))
    assert python == "python=3.11" and project["requires-python"] == ">=3.11,<3.12"


def _closure(requirements: list[str]) -> dict:
    """The installed distributions that `requirements` need, recursively, each checked against its specifier."""
    found, todo = {}, [(Requirement(r), ()) for r in requirements]
    while todo:
        req, why = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req} (needed by {' <- '.join(why) or 'the env file'}) is not installed here")
        assert req.specifier.contains(dist.version, prereleases=True), f"{req}: installed {dist.version}"
        found[name] = dist
        for sub in dist.requires or []:
            r = Requirement(sub)
            extras = [""] + sorted(req.extras)
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras):
                todo.append((r, (req.name, *why)))
    return found


def build_venv(path: Path) -> Path:
    """A venv whose site-packages links the pinned distributions and their requirements, and nothing else."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(path)],
                   check=True)
    site = next(path.glob("lib/python3.*/site-packages"))
    for dist in _closure(env_pins()[1]).values():
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            src = Path(dist.locate_file(top))
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    return path / "bin" / "python"


@pytest.mark.slow
def test_a_venv_from_the_env_file_runs_a_rule_script(tmp_path):
    python = build_venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    # no editable install and no stray steercore: only the workflow folder provides it
    alone = subprocess.run([python, "-c", "import steercore"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert "No module named 'steercore'" in alone.stderr, alone.stderr
    listed = subprocess.run([python, "-c", "import snakemake, torch, pytest"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert "No module named 'pytest'" in listed.stderr, listed.stderr  # test extras are not in the env file

    workflow = tmp_path / "workflow"  # the parts of a workflow folder that a job reads
    workflow.mkdir()
    for part in ("config", "steercore", "workflow_scripts"):
        (workflow / part).symlink_to(ROOT / part)
    out = workflow / "results" / "cov" / "shard.safetensors"
    res = subprocess.run([python, "workflow_scripts/cov_shard.py", "--experiment", "ci", "--shard", "0",
                          "--shards", "2", "--device", "cpu", "--threads", "1", "--out", str(out)],
                         cwd=workflow, env=env | {"PYTHONPATH": str(workflow)}, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    from safetensors import safe_open

    with safe_open(out, "pt") as f:
        assert f.metadata()["samples"] == "32" and f.keys()  # the first of two shards of ci's 64 samples
    where = subprocess.run([python, "-c", "import steercore, torch; print(steercore.__file__, torch.__file__)"],
                           cwd=workflow, env=env | {"PYTHONPATH": str(workflow)}, capture_output=True, text=True)
    steercore_file, torch_file = where.stdout.split()
    assert steercore_file.startswith(str(workflow)) and re.search(r"venv/lib/python3\.\d+/site-packages/torch",
                                                                  torch_file), where.stdout
