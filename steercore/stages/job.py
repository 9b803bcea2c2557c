"""What every workflow script shares: one-line errors, thread count, and the device a job runs on."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager, nullcontext
from functools import wraps

import torch

from steercore.core.errors import SteerError


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


@contextmanager
def job_device(spec: str = "auto", threads: int | None = None):
    """Yield the torch device for this job: `auto` takes a GPU from the local pool (profiles/local-gpus),
    the one SLURM gave, any visible GPU, else the CPU; anything else is used as given."""
    if threads:
        torch.set_num_threads(threads)
    if spec == "auto":
        from steercore.models.devices import acquire_device

        ctx = acquire_device()
    else:
        ctx = nullcontext(spec)
    with ctx as device:
        yield device


def experiment_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a job that runs a model for one experiment: --experiment, --device, --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", required=True, help="preset name (config/experiments/<name>.yaml)")
    add_common_args(parser)
    return parser


def add_common_args(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
