"""Assertions and helpers several test modules share."""

import subprocess
import time
from pathlib import Path

from steercore.experiments.preset import ROOT


def assert_one_line_fast(excinfo, started, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and time.monotonic() - started < 5
    for n in needles:
        assert n in msg, msg


PARTS = ("Snakefile", "rules", "config", "report", "profiles", "envs", "workflow_scripts")


def workflow_copy(dest: Path) -> Path:
    """A copy of the workflow files, so that the test writes its own results/ and logs/."""
    for part in PARTS:
        subprocess.run(["cp", "-r", str(ROOT / part), str(dest / part)], check=True)
    return dest
