"""A throwaway single-node SLURM cluster on localhost, for tests/test_slurm.py (needs root, Debian).

`slurm_cluster(state_dir)` installs slurm-wlm and munge if missing (.ci/slurm-setup), starts munged
(unless one already answers), slurmctld and slurmd in the foreground as our own children, and yields a
`SlurmCluster`; on exit it cancels leftover jobs, stops every daemon it started by PID (SIGTERM, then
SIGKILL) and removes the config it wrote — also when the test fails. The config lives where Debian's
SLURM looks for it, /etc/slurm/slurm.conf (+ gres.conf), because the plugin's job step runs a nested
`srun` with SLURM_* variables stripped, so SLURM_CONF cannot point elsewhere. Without accounting and
without cgroups: AccountingStorageType=none, ProctrackType=linuxproc, TaskPlugin=none. The node has the
machine's real CPUs and memory (`slurmd -C`) plus `gpus` fake GPUs (GRES on copies of /dev/null), so
`--gpus=1` jobs schedule and SLURM sets CUDA_VISIBLE_DEVICES for them. MinJobAge is one hour, so finished
jobs stay visible to `squeue`/`scontrol` (the status source when there is no accounting).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = Path("/etc/slurm")
MARKER = "# steerflow-test-cluster: written by tests/slurm_cluster.py, removed when the test cluster stops"
# PIDs of daemons we started, so that a later run can stop those a killed run left behind.
PID_RECORD = Path("/run/steerflow-test-cluster.pids")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


class ClusterError(RuntimeError):
    pass


def _bin(name: str) -> str:
    """A SLURM/MUNGE program by absolute path: daemons live in /usr/sbin, which a CI PATH may lack."""
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin", "/sbin")
                                       if os.access(f"{d}/{name}", os.X_OK)), name)


def _run(cmd: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([_bin(cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=timeout,
                          check=check, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_hardware() -> dict[str, int]:
    """The node's real CPU count and memory (MB), as slurmd itself measures them."""
    out = _run(["slurmd", "-C"]).stdout
    cpus = int(re.search(r"\bCPUs=(\d+)", out).group(1))
    mem = int(re.search(r"\bRealMemory=(\d+)", out).group(1))
    return {"cpus": cpus, "mem_mb": mem}


def munge_works() -> bool:
    try:
        cred = _run(["munge", "-n"], timeout=10).stdout
        return _run(["unmunge"], input=cred, timeout=10, check=False).returncode == 0
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; reaps the process if it is our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:  # not our child: poll for its disappearance instead
                if not _pid_alive(pid):
                    return
            time.sleep(0.1)


def stop_leftovers() -> None:
    """Stop daemons that an earlier, killed run recorded, if those PIDs still run the same program."""
    if not PID_RECORD.exists():
        return
    for line in PID_RECORD.read_text().split():
        name, _, pid = line.partition(":")
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            continue
        if comm == name:
            _stop_pid(int(pid))
    PID_RECORD.unlink(missing_ok=True)


def _write_ours(path: Path, text: str) -> None:
    """Write a config file unless a foreign one (without our marker) is there: never clobber a real cluster."""
    if path.exists() and MARKER not in path.read_text(errors="replace"):
        raise ClusterError(f"{path} exists and was not written by the test; refusing to overwrite a real "
                           "SLURM config (run the SLURM test on a machine without one, e.g. CI)")
    path.write_text(f"{MARKER}\n{text}")


def _remove_ours(path: Path) -> None:
    if path.exists() and MARKER in path.read_text(errors="replace"):
        path.unlink()


@dataclass
class SlurmCluster:
    state_dir: Path
    gpus: int = 2
    partition: str = "main"          # the default partition
    gpu_partition: str = "gpu"       # a second partition on the same node, for STEERFLOW_SLURM_GPU_PARTITION
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    hardware: dict[str, int] = field(default_factory=dict)
    gpu_files: list[str] = field(default_factory=list)
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])

    # -- config -------------------------------------------------------------------------------------------
    def slurm_conf(self) -> str:
        s = self.state_dir
        hw = self.hardware
        return f"""\
ClusterName=steerflowtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={s}/ctld-state
SlurmdSpoolDir={s}/slurmd-spool
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/slurmctld.log
SlurmdLogFile={s}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track processes by parent PID, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting daemon: status comes from slurmctld (squeue / scontrol); keep finished jobs for an hour.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
# cons_tres: needed for --gpus / --cpus-per-gpu.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={hw['cpus']} RealMemory={hw['mem_mb']} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName={self.gpu_partition} Nodes={self.host} Default=NO MaxTime=INFINITE State=UP
"""

    def gres_conf(self) -> str:
        if self.gpu_files == ["/dev/null"]:
            return f"NodeName={self.host} Name=gpu File=/dev/null\n"
        return f"NodeName={self.host} Name=gpu File={self.state_dir}/fakegpu[0-{self.gpus - 1}]\n"

    def _make_fake_gpus(self) -> None:
        """One character device per fake GPU (SLURM insists on device files and numbers GPUs by the trailing
        digit of the name); they are copies of /dev/null. Without CAP_MKNOD: one fake GPU, /dev/null."""
        try:
            for i in range(self.gpus):
                path = self.state_dir / f"fakegpu{i}"
                path.unlink(missing_ok=True)
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            self.gpu_files = [str(self.state_dir / f"fakegpu{i}") for i in range(self.gpus)]
        except PermissionError:
            self.gpus, self.gpu_files = 1, ["/dev/null"]

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the SLURM test cluster needs root (it installs packages and writes /etc/slurm)")
        setup = _run(["sh", str(REPO / ".ci" / "slurm-setup")], timeout=900, check=False)
        if setup.returncode != 0:
            raise ClusterError(f".ci/slurm-setup failed: {setup.stderr.strip()[-2000:]}")
        stop_leftovers()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("ctld-state", "slurmd-spool"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        self._make_fake_gpus()
        self.hardware = node_hardware()

        if not munge_works():
            self._start_munged()
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        _write_ours(CONF_DIR / "slurm.conf", self.slurm_conf())
        _write_ours(CONF_DIR / "gres.conf", self.gres_conf())
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(lambda: _run(["scontrol", "ping"], check=False).stdout.count("UP") > 0, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.host])
        self._wait(self._node_ready, f"node {self.host} to become idle")

    def _start_munged(self) -> None:
        for d, mode in (("/run/munge", 0o755), ("/var/log/munge", 0o700), ("/var/lib/munge", 0o700)):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, "munge", "munge")
            os.chmod(d, mode)
        MUNGE_SOCKET.unlink(missing_ok=True)
        self._spawn("munged", ["munged", "--foreground"], user="munge")
        self._wait(munge_works, "munged to answer")

    def _spawn(self, name: str, cmd: list[str], **kw) -> None:
        log = open(self.state_dir / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen([_bin(cmd[0]), *cmd[1:]], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        log.close()
        with open(PID_RECORD, "a") as f:
            f.write(f"{name}:{self.procs[name].pid}\n")

    def _node_ready(self) -> bool:
        states = set(_run(["sinfo", "-h", "-N", "-n", self.host, "-o", "%T"], check=False).stdout.split())
        return bool(states) and states <= {"idle", "mixed", "allocated"}  # one line per partition

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{dead[0]} exited while waiting for {what}:\n{self.diagnostics()}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout:g} s waiting for {what}:\n{self.diagnostics()}")

    def stop(self) -> None:
        """Cancel our jobs, stop our daemons by PID (slurmd, slurmctld, munged), remove our config."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            ids = _run(["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"], check=False, timeout=15).stdout.split()
            if ids:
                _run(["scancel", *ids], check=False, timeout=15)
                self._wait_quietly(lambda: not _run(["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"],
                                                    check=False, timeout=15).stdout.split(), 20)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in self.procs:
                _stop_pid(self.procs[name].pid)
        self.procs.clear()
        PID_RECORD.unlink(missing_ok=True)
        _remove_ours(CONF_DIR / "slurm.conf")
        _remove_ours(CONF_DIR / "gres.conf")

    @staticmethod
    def _wait_quietly(ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ready():
            time.sleep(0.5)

    # -- inspection ---------------------------------------------------------------------------------------
    def show_job(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Comment, TRES/AllocTRES, ...)."""
        out = _run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def submitted_job_ids(self) -> list[str]:
        """Ids of every batch job slurmctld accepted (from its log: there is no accounting database)."""
        log = (self.state_dir / "slurmctld.log").read_text(errors="replace")
        return re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", log)

    def diagnostics(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
            path = self.state_dir / name
            if path.exists():
                parts.append(f"--- {name} (tail) ---\n" + "\n".join(path.read_text(errors="replace")
                                                                   .splitlines()[-25:]))
        try:
            parts.append("--- scontrol show node ---\n" + _run(["scontrol", "show", "node"], check=False).stdout)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            pass
        return "\n".join(parts)


@contextmanager
def slurm_cluster(state_dir: Path, gpus: int = 2):
    """Bring the cluster up, yield it, and always tear it down (also when start-up or the test fails)."""
    cluster = SlurmCluster(Path(state_dir), gpus=gpus)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
