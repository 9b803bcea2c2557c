"""Job devices: a `device` setting the machine cannot honour fails at job start naming the key; paper models
refuse a CPU they were not explicitly given; every model load logs what runs where."""

import pytest
import torch

from steercore.core.errors import ConfigError
from steercore.models.registry import load_model
from steercore.stages.job import JobDevice, check_device, job_device


def test_auto_yields_a_device_that_remembers_it_was_auto():
    with job_device("auto") as device:
        assert isinstance(device, JobDevice) and device.requested == "auto"
        assert torch.device(device).type in ("cpu", "cuda")
    with job_device("cpu") as device:
        assert device == "cpu" and device.requested == "cpu"


@pytest.mark.parametrize("spec", ["cuda:x", "gpu", "cuda;ls", ""])
def test_unparseable_devices_name_the_key(spec):
    with pytest.raises(ConfigError, match="^config/config.yaml: device: "):
        check_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_one_fails_at_job_start():
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):
        with job_device("cuda:0"):
            pytest.fail("the job body must not run")


def test_testbed_runs_on_an_auto_cpu_and_logs_model_revision_dtype_device_gpu(capsys):
    load_model("testbed-lm", device=JobDevice("cpu", "auto"))
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("model testbed-lm:")]
    assert len(line) == 1
    assert "revision testbed@" in line[0] and "dtype float32" in line[0] and "device cpu" in line[0]
    assert "GPU none" in line[0]


def test_paper_model_refuses_an_auto_cpu_but_takes_an_explicit_one(tmp_path):
    with pytest.raises(ConfigError, match="model sd15 would run on the CPU \\(device: auto"):
        load_model("sd15", device=JobDevice("cpu", "auto"), local_dir=tmp_path)
    # explicit cpu: the refusal is passed and loading proceeds (here to the empty folder's own error)
    with pytest.raises(Exception) as err:
        load_model("sd15", device=JobDevice("cpu", "cpu"), local_dir=tmp_path)
    assert "would run on the CPU" not in str(err.value)
