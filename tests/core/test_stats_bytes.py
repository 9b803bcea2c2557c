"""The same statistics give the same bytes in every process (safetensors orders its metadata by a hash map;
save_stats rewrites the header with sorted keys), so a resumed run is byte-identical to an uninterrupted one."""

import hashlib
import os
import subprocess
import sys

from steercore.core.files import load_stats

SCRIPT = """
import sys, torch
from steercore.core.files import save_stats
from steercore.core.stats import ActivationStats
s = ActivationStats("neutral", "all", meta={"model": "m", "source": "x", "samples": 3, "seed": 0, "a": 1, "b": 2})
s.add(step=0, site="up.0", x=torch.arange(24, dtype=torch.float64).reshape(1, 6, 4))
s.add(step=1, site="down.0", x=torch.ones(1, 6, 4))
save_stats(s, sys.argv[1])
"""


def test_statistics_files_are_byte_identical_across_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    digests = set()
    for i in range(4):  # four interpreters, four hash seeds
        path = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, timeout=120)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    stats = load_stats(tmp_path / "0.safetensors")
    assert stats.sites == {"down.0": 4, "up.0": 4} and stats.meta["a"] == 1 and stats.meta["samples"] == "3"
