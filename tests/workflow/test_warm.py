"""Warm job starts (workflow_scripts/warm.py): a job forked from the warm server behaves as `python SCRIPT`
would (streams, exit status, argv, directory, environment), starts cold with its reason where it cannot be
forked, and dies with its client. test_grain.py checks that warm and cold workflow runs give identical files."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steercore.experiments.preset import ROOT

pytestmark = pytest.mark.slow  # each server imports torch, diffusers and transformers once (~10-25 s)

WARM = ROOT / "workflow_scripts" / "warm.py"
JOB = '''"""a job"""
import sys
sys.path.insert(0, {scripts!r})
import warm

warm.start()
import os, time
print("pid", os.getpid(), "parent", os.getppid(), "cwd", os.getcwd(), "argv", sys.argv[1:], flush=True)
print("job stderr", os.environ.get("JOB_TAG"), os.environ.get("TMPDIR"), file=sys.stderr)
print("torch loaded before the job:", "torch" in sys.modules)
action = sys.argv[1]
if action == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(60)
elif action == "raise":
    raise ValueError("a bad input")
elif action == "message":
    sys.exit("error: one line")
sys.exit(int(action))
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    sock = tmp / "s.sock"
    env = {**os.environ, "STEERFLOW_WARM_SOCKET": str(sock)}
    proc = subprocess.Popen([sys.executable, str(WARM), "serve", str(sock), str(os.getpid()), str(tmp / "server.log")],
                            env=env, cwd=tmp)
    deadline = time.time() + 120
    while "ready" not in ((tmp / "server.log").read_text() if (tmp / "server.log").exists() else ""):
        assert proc.poll() is None and time.time() < deadline, (tmp / "server.log").read_text()
        time.sleep(0.1)
    (tmp / "job.py").write_text(JOB.format(scripts=str(WARM.parent)))
    yield tmp, env, proc
    proc.terminate()
    proc.wait(10)


def run(server, *args, env=None, **kw) -> tuple[subprocess.CompletedProcess, str, str]:
    tmp, base, proc = server
    with open(tmp / "out.txt", "w") as out, open(tmp / "err.txt", "w") as err:
        res = subprocess.run([sys.executable, str(tmp / "job.py"), *args], cwd=tmp, env={**base, **(env or {})},
                             stdout=out, stderr=err, timeout=60, **kw)
    return res, (tmp / "out.txt").read_text(), (tmp / "err.txt").read_text()


def test_a_forked_job_gets_the_clients_streams_argv_status_and_job_variables(server):
    tmp, _, proc = server
    res, out, err = run(server, "0", env={"TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, err
    assert f"parent {proc.pid}" in out and f"cwd {tmp}" in out and "argv ['0']" in out, out  # forked, here
    assert "torch loaded before the job: True" in out
    assert f"job stderr None {tmp}" in err and "warm start" not in err, err
    assert run(server, "3")[0].returncode == 3
    res, out, err = run(server, "raise")
    assert res.returncode == 1 and "ValueError: a bad input" in err and "Traceback" in err, err
    res, out, err = run(server, "message")
    assert res.returncode == 1 and err.strip().endswith("error: one line"), err


def test_another_environment_starts_cold_and_says_why(server):
    res, out, err = run(server, "0", env={"JOB_TAG": "x", "HF_HUB_CACHE": "/elsewhere"})
    assert res.returncode == 0
    assert err.splitlines()[0] == ("warm start: no, environment differs in HF_HUB_CACHE, JOB_TAG; starting cold"), err
    assert f"parent {server[2].pid}" not in out and "torch loaded before the job: False" in out, out
    assert "job stderr x" in err


def test_without_a_server_the_job_runs_cold_and_silent(server, tmp_path):
    res, out, err = run(server, "4", env={"STEERFLOW_WARM_SOCKET": ""})
    assert res.returncode == 4 and "warm start" not in err
    res, out, err = run(server, "0", env={"STEERFLOW_WARM_SOCKET": str(tmp_path / "none.sock")})
    assert res.returncode == 0 and err.startswith("warm start: no, the warm server is not reachable"), err


def test_killing_the_client_kills_the_job(server):
    tmp, base, _ = server
    pid_file = tmp / "child.pid"
    client = subprocess.Popen([sys.executable, str(tmp / "job.py"), "sleep", str(pid_file)], cwd=tmp, env=base,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline and client.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert child != client.pid
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.time() + 5
    while Path(f"/proc/{child}").exists() and "zombie" not in _state(child):
        assert time.time() < deadline, f"job {child} outlived its client"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "gone"


def test_the_server_ends_with_its_parent(tmp_path):
    sock = tmp_path / "s.sock"
    # a parent that exits at once: the server notices within a fraction of a second after its imports
    parent = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys
subprocess.Popen([sys.executable, {str(WARM)!r}, 'serve', {str(sock)!r}, __import__('os').getpid().__str__(),
                  {str(tmp_path / 'log')!r}])
"""])
    parent.wait()
    deadline = time.time() + 120
    while "ready" not in ((tmp_path / "log").read_text() if (tmp_path / "log").exists() else "") or sock.exists():
        assert time.time() < deadline, "the server outlived its parent"
        time.sleep(0.2)


def test_launch_returns_once_the_server_takes_jobs(tmp_path, server):
    """The Snakefile's onstart (warm.launch) returns with the socket bound: a job started right after it is
    forked (it waits in the backlog while the server imports), not started cold."""
    snakemake = f"""
import importlib.util, os, subprocess, sys
spec = importlib.util.spec_from_file_location("warm", {str(WARM)!r})
warm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(warm)
server = warm.launch({str(tmp_path / 'logs' / 'warm.log')!r})
job = subprocess.run([sys.executable, {str(server[0] / 'job.py')!r}, "0"], capture_output=True, text=True)
folder = os.path.dirname(os.environ[warm.SOCKET_ENV])
print(server.pid, job.returncode, oct(os.stat(folder).st_mode & 0o777), job.stdout, job.stderr)
server.terminate()
"""
    env = {k: v for k, v in os.environ.items() if k != "STEERFLOW_WARM_SOCKET"}
    res = subprocess.run([sys.executable, "-c", snakemake], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=180)
    pid, code, mode, *rest = res.stdout.split(maxsplit=3)
    assert code == "0" and f"parent {pid}" in res.stdout and "warm start: no" not in res.stdout, res.stdout + res.stderr
    assert mode == "0o700"  # a private folder: nobody else can connect, nor plant a socket where jobs look


def test_each_side_checks_who_is_at_the_other_end():
    """SO_PEERCRED gives the uid of the peer process; start() and the server compare it with their own."""
    import socket

    spec = importlib.util.spec_from_file_location("warm_for_test", WARM)
    warm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(warm)
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert warm.peer_uid(a) == warm.peer_uid(b) == os.getuid()


SYSTEM_PYTHON = "/usr/bin/python3"  # one that user nobody may run (the venv's may sit in root's home)


@pytest.mark.skipif(os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="runs a peer as user nobody with /usr/bin/python3, which needs root (CI runs as root)")
def test_a_peer_of_another_user_is_refused_on_both_sides(monkeypatch):
    """A job finding another user's socket where it looks for its server starts cold, and a server closes a
    connection from another user before it reads anything (let alone forks it a job)."""
    import shutil
    import socket
    import tempfile

    spec = importlib.util.spec_from_file_location("warm_for_test", WARM)
    warm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(warm)
    shared = Path(tempfile.mkdtemp())  # reachable for nobody (pytest's own tmp folders are root's alone)
    try:
        shared.chmod(0o777)
        shutil.copy(WARM, shared / "warm.py")
        path = shared / "socket"

        def as_nobody(code):
            return subprocess.Popen([SYSTEM_PYTHON, "-c", f"import sys; sys.path.insert(0, {str(shared)!r}); import warm\n{code}"],
                                    env={"STEERFLOW_WARM_SOCKET": str(path)}, cwd=shared, user=65534, group=65534,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            path.chmod(0o777)
            listener.listen(2)
            job = as_nobody("warm.start(); print('ran cold')")
            listener.accept()[0].close()
            out, err = job.communicate(timeout=60)
            assert out.strip() == "ran cold" and "runs as uid 0, not 65534; starting cold" in err, out + err

            intruder = as_nobody(f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r})\n"
                                 "try: print(warm._handoff(s, ['job.py']))\n"
                                 "except OSError as e: print('closed:', type(e).__name__)")
            conn = listener.accept()[0]
            monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked a job for another user"))
            assert warm._start(conn, []) is None
            out, err = intruder.communicate(timeout=60)
            # closed unread: no answer and no reason (a server that read the request would decline with one)
            assert out.strip() in ("warm server went away", "closed: BrokenPipeError", "closed: ConnectionResetError"), \
                out + err
    finally:
        shutil.rmtree(shared)
