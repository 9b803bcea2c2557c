"""Stand-in GPU job: hold a device of the local pool (a no-op inside SLURM), write a result that does not
depend on where the job ran, and record where it ran (SLURM job id, visible GPU, when it held it)."""

import hashlib
import os
import socket
import time

from steercore.models.devices import acquire_device

sample = snakemake.wildcards.sample  # noqa: F821 (set by Snakemake)
with acquire_device() as device:
    start = time.time()
    time.sleep(float(snakemake.params.hold))  # noqa: F821
    where = {
        "job_id": os.environ.get("SLURM_JOB_ID", "none"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        "job_gpus": os.environ.get("SLURM_STEP_GPUS") or os.environ.get("SLURM_JOB_GPUS") or "none",
        "host": socket.gethostname(),
        "device": device,
        "start": f"{start:.3f}",
        "end": f"{time.time():.3f}",
    }

digest = hashlib.sha256(sample.encode()).hexdigest()[:16]
with open(snakemake.output.result, "w") as f:  # noqa: F821
    f.write(f"sample\tdigest\n{sample}\t{digest}\n")
with open(snakemake.output.where, "w") as f:  # noqa: F821
    f.write("\t".join(where) + "\n" + "\t".join(where.values()) + "\n")
