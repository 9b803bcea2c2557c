"""The local GPU pool (steercore/devices.py), on CPU with fake device ids and real flock locks."""

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from steercore.models.devices import (VISIBLE_VAR, DeviceTimeoutError, acquire_device, configured_devices)
from steercore.core.errors import ConfigError, SteerError

FORK = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("STEERFLOW_GPUS", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(VISIBLE_VAR, raising=False)
    monkeypatch.setenv("STEERFLOW_GPU_LOCK_DIR", str(tmp_path / "locks"))


def test_configured_devices_parses_and_rejects(monkeypatch):
    assert configured_devices("0, 1,2") == ["0", "1", "2"]
    assert configured_devices("") == [] and configured_devices(" , ") == []
    assert configured_devices("GPU-8f3c2a1b-aaaa,MIG-1") == ["GPU-8f3c2a1b-aaaa", "MIG-1"]
    assert configured_devices() == []
    monkeypatch.setenv("STEERFLOW_GPUS", "3,5")
    assert configured_devices() == ["3", "5"]
    with pytest.raises(ConfigError, match="repeat"):
        configured_devices("0,1,0")
    with pytest.raises(ConfigError, match="not a device id"):
        configured_devices("0,../x")


def test_no_pool_is_a_no_op():
    with acquire_device() as device:
        assert device == "cpu"  # these tests run without CUDA
        assert VISIBLE_VAR not in os.environ
    assert not os.path.exists(os.environ["STEERFLOW_GPU_LOCK_DIR"])


def test_slurm_job_keeps_slurms_assignment(monkeypatch):
    monkeypatch.setenv("STEERFLOW_GPUS", "0,1")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv(VISIBLE_VAR, "3")
    with acquire_device() as device:
        assert device == "cpu" and os.environ[VISIBLE_VAR] == "3"


def test_acquire_sets_and_restores_visible_devices(monkeypatch):
    monkeypatch.setenv("STEERFLOW_GPUS", "7")
    monkeypatch.setenv(VISIBLE_VAR, "0,1,2,3,4,5,6,7")
    with acquire_device() as device:
        assert device == "cuda:0" and os.environ[VISIBLE_VAR] == "7"
    assert os.environ[VISIBLE_VAR] == "0,1,2,3,4,5,6,7"
    with acquire_device():  # released: the one id is free again
        pass


def test_nested_holders_get_distinct_ids_then_wait():
    with acquire_device("0,1") as _:
        first = os.environ[VISIBLE_VAR]
        with acquire_device(["0", "1"]):
            second = os.environ[VISIBLE_VAR]
            assert {first, second} == {"0", "1"}
            with pytest.raises(DeviceTimeoutError, match="no free GPU among 0,1"):
                with acquire_device("0,1", timeout=0.3, poll=0.05):
                    pass
        assert os.environ[VISIBLE_VAR] == first


def test_refuses_after_cuda_initialised(monkeypatch):
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    with pytest.raises(SteerError, match="already initialised"):
        with acquire_device("0"):
            pass


def _job(ids, marks, log, hold):
    """One 'GPU job': hold a device, prove exclusive use with an O_EXCL marker, log the id."""
    with acquire_device(ids) as _:
        device = os.environ[VISIBLE_VAR]
        marker = os.path.join(marks, device)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another job holds `device`
        time.sleep(hold)
        os.close(fd)
        os.unlink(marker)
    with open(log, "a") as f:
        f.write(f"{device}\n")


def test_concurrent_processes_never_share_an_id(tmp_path):
    ids, jobs = "0,1,2", 9
    marks = tmp_path / "held"
    marks.mkdir()
    log = tmp_path / "log"
    procs = [FORK.Process(target=_job, args=(ids, str(marks), str(log), 0.1)) for _ in range(jobs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * jobs  # any shared id would have raised FileExistsError
    used = log.read_text().split()
    assert len(used) == jobs and set(used) <= {"0", "1", "2"}
    assert len(set(used)) > 1  # jobs were spread over the pool, not serialised on one id


def _hold_forever(ids, ready):
    with acquire_device(ids):
        with open(ready, "w") as f:
            f.write(os.environ[VISIBLE_VAR])
        time.sleep(60)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_crashed_holder_releases_its_id(tmp_path, how):
    ready = tmp_path / "ready"
    child = FORK.Process(target=_hold_forever, args=("5", str(ready)))
    child.start()
    try:
        for _ in range(200):
            if ready.exists() and ready.read_text():
                break
            time.sleep(0.05)
        assert ready.read_text() == "5"
        with pytest.raises(DeviceTimeoutError):
            with acquire_device("5", timeout=0.2, poll=0.05):
                pass
        if how == "sigkill":
            os.kill(child.pid, signal.SIGKILL)
        else:
            child.terminate()  # SIGTERM: the process dies without running the context manager's exit
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    with acquire_device("5", timeout=5) as device:
        assert device == "cuda:0" and os.environ[VISIBLE_VAR] == "5"


STAND_IN = Path(__file__).parents[1] / "data" / "slurm_workflow" / "Snakefile"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_local_gpus_profile_gives_each_gpu_job_its_own_device(tmp_path):
    """profiles/local-gpus with two fake GPUs: four GPU jobs, two at a time, never two on one id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "STEERFLOW_GPU", VISIBLE_VAR))}
    env.update(STEERFLOW_GPUS="0,1", STEERFLOW_GPU_LOCK_DIR=str(tmp_path / "locks"), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(STAND_IN), "--directory", str(tmp_path / "wf"),
         "--workflow-profile", str(REPO / "profiles" / "default"), "--profile", str(REPO / "profiles" / "local-gpus"),
         "--config", "samples=a,b,c,d", "hold=1.5"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    log = next((tmp_path / "wf" / ".snakemake" / "log").glob("*.log")).read_text()
    assert re.search(r"Provided resources: gpu=(Resource\(\"gpu\", )?2\b", log)  # sized from STEERFLOW_GPUS
    rows = []
    for path in sorted((tmp_path / "wf" / "provenance").glob("generate-*.tsv")):
        header, values = path.read_text().splitlines()
        rows.append(dict(zip(header.split("\t"), values.split("\t"))))
    assert len(rows) == 4
    assert all(r["device"] == "cuda:0" and r["cuda_visible_devices"] in {"0", "1"} for r in rows), rows
    spans = [(r["cuda_visible_devices"], float(r["start"]), float(r["end"])) for r in rows]
    overlaps = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[1] < b[2] and b[1] < a[2]]
    assert overlaps, "the two GPUs were never used at the same time"
    assert all(a[0] != b[0] for a, b in overlaps), f"two jobs held the same GPU at once: {overlaps}"
