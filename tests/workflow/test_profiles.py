"""profiles/: each profile is profile.yaml, the name Snakemake 9 looks for first; config.yaml (what older
Snakemake and existing scripts read) is a link to the same file, so the two can never disagree."""

from pathlib import Path

import pytest
from snakemake.cli import get_profile_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default", "local-gpus", "slurm"])
def test_profiles_are_read_from_profile_yaml(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder, file = get_profile_dir(f"profiles/{name}")
    assert file == Path(f"profiles/{name}/profile.yaml") and file.is_file() and not file.is_symlink()
    legacy = ROOT / "profiles" / name / "config.yaml"
    assert legacy.is_symlink() and legacy.resolve() == (ROOT / file).resolve()
