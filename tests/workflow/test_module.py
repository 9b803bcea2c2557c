"""Steerflow as a Snakemake module: a foreign project in a temporary folder imports the workflow with
`module` + `use rule *`, brings its own preset (extending the shipped `ci`, one strength changed, its source
prompts from its own file) and its own results folder, and runs it end to end to its Pareto PDF. Every output
lands in the project's `results_dir`, and nothing is written into the Steerflow checkout."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steercore.experiments.preset import STEERFLOW
from steercore.tables import MANIFEST, PARETO_POINTS, read_tsv

pytestmark = pytest.mark.slow

SNAKEFILE = """\
configfile: "config/config.yaml"


module steerflow:
    snakefile: {snakefile!r}
    config: config


use rule * from steerflow as steerflow_*
"""

CONFIG = """\
experiments: [my_red_blue]
experiments_dir: presets
results_dir: out
device: cpu
threads: 1
"""

PRESET = """\
extends: ci                    # Steerflow's own preset: not in this project's folder
description: The ci run with a stronger second strength and this project's own red prompts.
strengths: [1, 3]
prompts:
  source: {file: prompts/shapes.txt}
"""

PROMPTS = "# the source prompts; {} is the concept's word\na {} circle on the left\na large {} square\n"


def foreign_project(root: Path) -> Path:
    (root / "config").mkdir()
    (root / "presets").mkdir()
    (root / "prompts").mkdir()
    (root / "Snakefile").write_text(SNAKEFILE.format(snakefile=str(STEERFLOW / "Snakefile")))
    (root / "config" / "config.yaml").write_text(CONFIG)
    (root / "presets" / "my_red_blue.yaml").write_text(PRESET)
    (root / "prompts" / "shapes.txt").write_text(PROMPTS)
    return root


def snakemake(cwd: Path, *args, timeout: int = 900) -> str:
    # the jobs import this checkout's steercore, as a project that installed Steerflow would
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(STEERFLOW), *filter(None, [os.environ.get("PYTHONPATH")])])}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    return out


def checkout_state() -> dict[str, tuple[int, int]]:
    """Every file of the Steerflow checkout with its size and modification time (not git's or the venv's)."""
    state = {}
    for folder, dirs, files in os.walk(STEERFLOW):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__", ".pytest_cache")]
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            state[os.path.relpath(os.path.join(folder, name), STEERFLOW)] = (st.st_size, st.st_mtime_ns)
    return state


def test_a_foreign_project_modules_steerflow_and_runs_its_own_preset(tmp_path):
    project = foreign_project(tmp_path / "project")
    before = checkout_state()

    # its own preset and Steerflow's shipped ones are all targets of the imported rules
    dry = snakemake(project, "-n", "out/pareto/testbed_red_blue.pdf")
    assert "steerflow_generate" in dry and "out/generate/testbed_red_blue/none-0/manifest.tsv" in dry

    snakemake(project, "out/pareto/my_red_blue.pdf")
    pdf = project / "out" / "pareto" / "my_red_blue.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert not (project / "results").exists(), "an output outside the project's results_dir"

    points = read_tsv(project / "out" / "pareto" / "my_red_blue.tsv", PARETO_POINTS)
    steered = {(p["method"], float(p["strength"])) for p in points if p["method"] not in ("none", "goal")}
    assert steered == {(m, b) for m in ("casteer", "leace", "midsteer") for b in (1.0, 3.0)}
    manifest = read_tsv(project / "out" / "generate" / "my_red_blue" / "manifest.tsv", MANIFEST)
    red = {row["prompt"] for row in manifest if row["concept"] == "red"}
    assert red == {"a red circle on the left", "a large red square"}  # the project's own prompt file
    assert len(manifest) == 7 * 3 * 2 * 2  # conditions x prompt sets x prompts x seeds, as ci
    assert (project / "logs" / "generate" / "my_red_blue").is_dir()

    assert checkout_state() == before, "the run wrote into the Steerflow checkout"
