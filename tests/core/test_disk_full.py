"""A full disk while writing (simulated with RLIMIT_FSIZE in a subprocess): one clear line, the previous
file intact, no temporary file left, and the same command succeeds once there is room."""

import os
import subprocess
import sys
import textwrap

import torch

from steercore.core.files import load_stats

SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    import torch
    from steercore.core.files import save_stats
    from steercore.core.stats import ActivationStats
    from steercore.stages.job import main_guard

    path, dim, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    @main_guard
    def main():
        stats = ActivationStats("neutral", "all")
        stats.add(step=0, site="up.0", x=torch.randn(2, 8, dim, generator=torch.Generator().manual_seed(dim)))
        if limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG, as with ENOSPC
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        save_stats(stats, path)

    main()
""")


def save_in_subprocess(path, dim, limit=0):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(dim), str(limit)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_full_disk_gives_one_line_keeps_the_old_file_and_the_rerun_completes(tmp_path):
    path = tmp_path / "results" / "cov.safetensors"
    assert save_in_subprocess(path, dim=4).returncode == 0  # an earlier, small version of the file
    old = path.read_bytes()

    res = save_in_subprocess(path, dim=128, limit=64 * 1024)  # the scatter alone is 128 KiB
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(path) in lines[0] and "File too large" in lines[0] and "free space and rerun" in lines[0]
    assert path.read_bytes() == old  # readers still see the complete old file, never a truncated one
    assert sorted(p.name for p in path.parent.iterdir()) == ["cov.safetensors"]  # no temporary file left

    assert save_in_subprocess(path, dim=128).returncode == 0  # room again: the same command completes
    stats = load_stats(path)
    assert stats.sites == {"up.0": 128} and torch.isfinite(stats.cov(0, "up.0")).all()
