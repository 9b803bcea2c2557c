"""A cross-process pool of local GPUs: each job holds one device id and sees only that GPU.

Snakemake's `--resources gpu=N` bounds how many GPU jobs run at once but does not say *which* GPU a job
gets. `acquire_device()` picks a free id from `$STEERFLOW_GPUS` (e.g. "0,1,2,3"), holds it with an
exclusive `flock` on one lock file per id, and sets `CUDA_VISIBLE_DEVICES` to it for the job. The kernel
drops a flock when its holder dies, so a crashed or killed job never leaks a device.

    with acquire_device() as device:      # "cuda:0" (the one visible GPU), or "cuda"/"cpu" without a pool
        model.to(device)

Call it before CUDA is initialised in the process (CUDA reads CUDA_VISIBLE_DEVICES only once), from a job's
own process (a `script:`), never from Snakemake's process (`run:`), whose environment all jobs share.

Every hold is logged on stderr (the job's log): the id, the pool, and when it was taken and given back, so a
run's logs show which job ran on which GPU and when. `cpu=True` rehearses the schedule on a machine without
GPUs: the job holds an id exactly as on a GPU machine but runs on the CPU (workflow: `device: cpu` with
`STEERFLOW_GPUS` set).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from steercore.core.errors import ConfigError, SteerError

GPUS_VAR = "STEERFLOW_GPUS"
LOCK_DIR_VAR = "STEERFLOW_GPU_LOCK_DIR"
VISIBLE_VAR = "CUDA_VISIBLE_DEVICES"
# CUDA_VISIBLE_DEVICES accepts indices ("0"), UUIDs ("GPU-8f3c…") and MIG ids ("MIG-…"): one token each.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class DeviceTimeoutError(SteerError):
    """No device of the pool became free within the timeout."""


def configured_devices(spec: str | None = None) -> list[str]:
    """The device ids of the pool: `spec`, else `$STEERFLOW_GPUS`, as a list ([] when unset or blank)."""
    if spec is None:
        spec = os.environ.get(GPUS_VAR, "")
    ids = [token.strip() for token in spec.split(",") if token.strip()]
    bad = [token for token in ids if not _ID.match(token)]
    if bad:
        raise ConfigError(f"{GPUS_VAR}: {bad[0]!r} is not a device id; give a comma-separated list such as '0,1,2,3'")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{GPUS_VAR}: device ids repeat in {spec!r}; list each GPU once")
    return ids


def default_lock_dir() -> Path:
    """`$STEERFLOW_GPU_LOCK_DIR`, else one directory per user under the system temp dir (machine-wide)."""
    if os.environ.get(LOCK_DIR_VAR):
        return Path(os.environ[LOCK_DIR_VAR])
    return Path(tempfile.gettempdir()) / f"steerflow-gpu-locks-{os.getuid()}"


def _try_lock(lock_dir: Path, device: str) -> int | None:
    """An fd holding the exclusive lock of `device`, or None when another holder has it."""
    fd = os.open(lock_dir / f"gpu-{device}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    # Who holds it, for people looking at the directory; the lock itself is the flock, not this text.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _no_pool_device() -> str:
    """The device a job uses when no pool is configured: the default CUDA device if there is one."""
    torch = sys.modules.get("torch")
    if torch is None:
        import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _log(what: str, at: float) -> None:
    """One line on the job's log; the epoch time lets a reader line up the holds of concurrent jobs."""
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    print(f"device pool: pid {os.getpid()} {what} at {stamp} ({at:.3f})", file=sys.stderr, flush=True)


@contextmanager
def acquire_device(devices: Sequence[str] | str | None = None, lock_dir: str | os.PathLike | None = None,
                   timeout: float | None = None, poll: float = 0.2, cpu: bool = False) -> Iterator[str]:
    """Hold one free device of the pool for the duration of the block and make it the only visible GPU.

    devices: ids (list or "0,1" string); default `$STEERFLOW_GPUS`. Empty → no pool: nothing is locked,
        CUDA_VISIBLE_DEVICES is left alone, and the block gets "cuda" if CUDA is available else "cpu".
        Inside a SLURM job the pool is also bypassed: SLURM has already set CUDA_VISIBLE_DEVICES.
    lock_dir: where the per-device lock files live; all jobs of a machine must use the same one.
    timeout: seconds to wait for a free device (None: wait as long as it takes).
    cpu: hold the id but run on the CPU (a rehearsal of the schedule; with no pool: "cpu").
    Yields the torch device string: "cuda:0", the single GPU the job can see ("cpu" when `cpu`).
    """
    ids = configured_devices(devices if isinstance(devices, str) else ",".join(devices)) \
        if devices is not None else configured_devices()
    if not ids or "SLURM_JOB_ID" in os.environ:
        yield "cpu" if cpu else _no_pool_device()
        return
    torch = sys.modules.get("torch")
    if not cpu and torch is not None and torch.cuda.is_initialized():
        raise SteerError("acquire_device(): CUDA is already initialised in this process, so it would ignore "
                         f"{VISIBLE_VAR}; call acquire_device() before any tensor is put on a GPU")

    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    # Start the scan at a per-process offset so that simultaneous jobs do not all contend for id 0 first.
    start = os.getpid() % len(ids)
    order = ids[start:] + ids[:start]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for device in order:
            fd = _try_lock(lock_dir, device)
            if fd is not None:
                break
        else:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeviceTimeoutError(f"no free GPU among {','.join(ids)} after {timeout:g} s (locks in "
                                         f"{lock_dir}); is --resources gpu= larger than the pool {GPUS_VAR}?")
            time.sleep(poll)
            continue
        break

    previous = os.environ.get(VISIBLE_VAR)
    os.environ[VISIBLE_VAR] = device
    since = time.time()
    _log(f"holds GPU id {device} of {','.join(ids)}" + (" (rehearsal: running on the CPU)" if cpu else ""), since)
    try:
        yield "cpu" if cpu else "cuda:0"
    finally:
        _log(f"released GPU id {device} after {time.time() - since:.1f} s", time.time())
        if previous is None:
            os.environ.pop(VISIBLE_VAR, None)
        else:
            os.environ[VISIBLE_VAR] = previous
        # Closing the fd releases the flock (unless a forked child still holds a copy of it).
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
