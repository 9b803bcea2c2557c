"""What every workflow script shares: one-line errors, the preset it loads, thread count, and the device a job
runs on."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager, nullcontext
from functools import wraps
from pathlib import Path

import torch

from steercore.core.errors import ConfigError, SteerError
from steercore.experiments.preset import Experiment, configure, load_experiment


def main_guard(main):
    """Run `main`; a SteerError (a user mistake) prints one line and exits 1, anything else keeps its traceback."""

    @wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SteerError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return run


class JobDevice(str):
    """The torch device string a job runs on, remembering the `device` setting it came from: a model other
    than the testbed runs on the CPU only when that setting was an explicit `cpu` (see load_model)."""

    requested: str

    def __new__(cls, device: str, requested: str):
        self = super().__new__(cls, device)
        self.requested = requested
        return self


def check_device(spec: str) -> None:
    """One line naming the `device` key when torch cannot parse `spec` or this machine lacks that device."""
    where = "config/config.yaml: device"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{where}: {spec!r} is not a torch device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"{where}: {spec!r} but this machine has no usable CUDA GPU; set device: auto "
                              "(GPU when there is one) or run the job on a GPU machine")
        if device.index is not None and device.index >= n:
            raise ConfigError(f"{where}: {spec!r} but this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: 'mps' but this machine has no Apple GPU; set device: auto or cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{where}: {spec!r} is not supported; use auto, cpu, cuda, cuda:N or mps")


@contextmanager
def job_device(spec: str = "auto", threads: int | None = None):
    """Yield the device for this job (a `JobDevice` string): `auto` takes a GPU from the local pool
    (profiles/local-gpus), the one SLURM gave, any visible GPU, else the CPU; anything else is checked
    against this machine (one line naming the `device` key if it cannot be used) and used as given."""
    if threads:
        torch.set_num_threads(threads)
    if spec == "auto":
        from steercore.models.devices import acquire_device

        ctx = acquire_device()
    else:
        check_device(spec)
        ctx = nullcontext(spec)
    with ctx as device:
        yield JobDevice(str(device), spec)


def preset_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a job that loads one experiment: --experiment and the preset arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", required=True, help="preset name (<experiments dir>/<name>.yaml)")
    add_preset_args(parser)
    return parser


def experiment_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a job that runs a model for one experiment: those of `preset_parser`, --device, --threads."""
    parser = preset_parser(description)
    add_common_args(parser)
    return parser


def add_preset_args(parser) -> None:
    """Where the presets are, where results go and the scale: the workflow config's keys, which the rule
    passes so that the job loads exactly the preset its DAG was built from (defaults: the config's)."""
    parser.add_argument("--experiments-dir", default="config/experiments",
                        help="the project's presets, relative to the working directory (then Steerflow's own)")
    parser.add_argument("--results-dir", default="results", help="root of every output")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every count of the preset, in (0, 1]")


def job_project(args) -> Path:
    """Configure presets and results as the job's arguments say; return the project: the working directory,
    where Snakemake runs every job of a workflow (also of one imported as a module)."""
    configure({"experiments_dir": args.experiments_dir, "results_dir": args.results_dir, "scale": args.scale})
    return Path.cwd()


def job_experiment(args) -> Experiment:
    """The experiment `--experiment` of the project, at the folders and scale of the job's arguments."""
    return load_experiment(args.experiment, job_project(args))


def add_common_args(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
