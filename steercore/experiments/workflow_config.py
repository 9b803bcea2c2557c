"""The workflow's own configuration (`config/config.yaml`): checked once at DAG parse time, every mistake one
line naming the key, and the experiment presets it names loaded.

May import: steercore.core, steercore.experiments.preset (no torch-heavy or plotting libraries: the Snakefile
imports this while it parses).
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache

import yaml

from steercore.core.errors import ConfigError
from pathlib import Path

from steercore.experiments.preset import (ROOT, SETTINGS, STEERFLOW, Experiment, check_preset_name, config_errors,
                                         list_experiments, load_experiment)

WHERE = "config/config.yaml"
# The device strings a job accepts: what torch.device parses and the workflow knows how to place a job on.
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


@lru_cache(maxsize=None)
def _schema() -> dict:
    return yaml.safe_load((STEERFLOW / "config" / "schema.yaml").read_text())


def config_mistakes(config: dict) -> list[str]:
    """One line per mistake in the workflow config (fills its defaults in place)."""
    errors = config_errors(config, _schema())
    device = config.get("device")
    if isinstance(device, str) and not DEVICE.match(device):  # replaces the schema's pattern message
        errors = [e for e in errors if not e.startswith("device:")]
        errors.append(f"device: {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if "scale" in config:  # one plain sentence instead of the schema's type/minimum/maximum messages
        from steercore.experiments.scale import check_scale

        errors = [e for e in errors if not e.startswith("scale:")]
        try:
            check_scale(config["scale"])
        except ConfigError as e:
            errors.append(str(e))
    return [f"{WHERE}: {e}" for e in errors]


def check_config(config: dict) -> None:
    """Stop Snakemake before any job, printing every mistake of config/config.yaml on its own line."""
    mistakes = config_mistakes(config)
    if mistakes:
        sys.exit("\n".join(f"Steerflow config error: {m}" for m in mistakes))


class Presets(dict):
    """name → Experiment for the rules' input functions. A name no preset has (a target such as
    results/pareto/typo.pdf) stops Snakemake with one line: Snakemake would wrap any exception raised in an
    input function in a traceback, but lets SystemExit through."""

    root: Path = ROOT

    def __missing__(self, name: str) -> Experiment:
        hint = f"{SETTINGS['experiments_dir']}/{name}.yaml does not load"
        try:
            check_preset_name(name, self.root)
        except ConfigError as e:  # the close preset names, or: this is a sweep family, use a member
            hint = str(e).split("; ", 1)[1] if str(e).startswith("unknown") else str(e)
        sys.exit(f"Steerflow config error: no experiment preset '{name}'; {hint}")


def load_presets(wanted: list[str], root: Path = ROOT) -> Presets:
    """Every preset of the project `root` (its experiments_dir, then Steerflow's own; see `configure`),
    validated; the names `wanted` (config's `experiments`) must exist."""
    exps = Presets((name, load_experiment(name, root)) for name in list_experiments(root))
    exps.root = Path(root)
    missing = [e for e in wanted if e not in exps]
    if missing:
        raise ConfigError(f"{WHERE}: experiments: unknown experiment '{missing[0]}'; presets: {', '.join(exps)}")
    return exps
