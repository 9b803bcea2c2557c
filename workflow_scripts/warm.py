"""Warm job starts: run a workflow script in a process forked from one that has already imported torch,
diffusers, transformers, matplotlib and steercore, instead of paying those imports (~5 s of CPU) in every job.

Every workflow script begins with `warm.start()`. When this Snakemake run has a warm server (the Snakefile's
onstart starts one on a machine without a GPU; config `warm_start`), `start` hands the job over on the Unix
socket named by $STEERFLOW_WARM_SOCKET: its argv, working directory, umask, environment and standard streams
(the descriptors themselves, SCM_RIGHTS). The server forks; the child takes all of these over and runs the
script as `__main__`, exactly as `python SCRIPT` would, and its exit status becomes this process's. Otherwise
`start` returns and the script runs here, cold: no server for this run (SLURM jobs on other nodes, modules,
dry runs), another interpreter (conda envs), another working directory, or an environment that differs in
anything a library may read at import time (all but ALLOWED_TO_DIFFER; HF_HUB_CACHE, say, is read when
huggingface_hub is imported). A run that has a server says why a job started cold in the first line of its log.

A job stays one process as far as Snakemake and the user can tell: its stdout/stderr are the job's log, its
exit status is the job's, and killing the client (Snakemake cancelling a job, a SIGKILL of the whole run)
kills it: the child watches the connection and SIGKILLs itself when the client is gone. The server never
touches a GPU (CUDA cannot be used in a process forked from one that initialised it) and lives as long as
the Snakemake process that started it. Snakemake's benchmark files time the client: their wall time is the
job's, their CPU time and memory are not (`--config warm_start=false` measures those).

    python warm.py serve SOCKET PARENT_PID LOG      # what the Snakefile's onstart runs
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import time

# Variables that Snakemake sets per job (threads, tmpdir) or a shell sets, none of which a library reads at
# import time; the child applies them before the job's code runs (threads: torch.set_num_threads).
ALLOWED_TO_DIFFER = frozenset({
    "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR", "_", "SHLVL", "PWD", "OLDPWD",
})
# What the jobs import (each name is tried; a missing optional package is skipped): modules, every module of
# steercore, then (module, attribute) pairs for the lazily imported classes of diffusers and transformers.
PRELOAD = (
    "numpy", "PIL.Image", "PIL.PngImagePlugin", "yaml", "safetensors.torch", "torch", "scipy.linalg", "tqdm",
    "matplotlib", "matplotlib.pyplot", "matplotlib.backends.backend_agg", "matplotlib.backends.backend_pdf",
    "matplotlib.backends.backend_svg", "transformers", "diffusers", "huggingface_hub", "open_clip",
)
PRELOAD_ATTRS = (
    ("diffusers", ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "UNet2DConditionModel",
                   "AutoencoderKL", "DDIMScheduler", "EulerDiscreteScheduler", "SanaPipeline",
                   "PixArtAlphaPipeline")),
    ("transformers", ("AutoTokenizer", "AutoModelForCausalLM", "PreTrainedTokenizerFast", "LlamaForCausalLM",
                      "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "CLIPModel", "GPT2LMHeadModel",
                      "AutoModelForSequenceClassification")),
)
SOCKET_ENV = "STEERFLOW_WARM_SOCKET"
_LEN = struct.Struct("!I")


# ----------------------------------------------------------------------------------------------- client

_IN_CHILD = False  # set in a forked job: its script's own start() must not hand it over again


def start() -> None:
    """Hand this job to the run's warm server and exit with its status; return if it runs here (cold)."""
    path = os.environ.get(SOCKET_ENV)
    if _IN_CHILD or not path:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            owner = peer_uid(sock)  # never hand the job (its environment, its streams) to another user
            reason = (_handoff(sock, sys.argv) if owner == os.getuid()  # exits unless the server declines
                      else f"the warm server at {path} runs as uid {owner}, not {os.getuid()}")
    except OSError as e:
        reason = f"the warm server is not reachable ({e.strerror or e})"
    print(f"warm start: no, {reason}; starting cold", file=sys.stderr, flush=True)


def _handoff(sock: socket.socket, argv: list[str]) -> str | None:
    """Hand the job to the server and exit with its status; return the reason if the server declines."""
    umask = os.umask(0o022)
    os.umask(umask)
    request = json.dumps({"argv": [os.path.abspath(argv[0]), *argv[1:]], "cwd": os.getcwd(), "umask": umask,
                          "python": sys.executable, "env": dict(os.environ)}).encode()
    socket.send_fds(sock, [_LEN.pack(len(request))], [0, 1, 2])
    sock.sendall(request)
    answer = _recv_exact(sock, 1)
    if answer != b"S":  # declined: the reason follows (or the server went away before forking)
        return (answer[1:] + sock.recv(4096)).decode(errors="replace") if answer else "warm server went away"
    status = _recv_exact(sock, 4)
    if len(status) < 4:
        print("warm start: the server went away during the job; its status is unknown", file=sys.stderr)
        os._exit(1)
    os._exit(struct.unpack("!i", status)[0])


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ----------------------------------------------------------------------------------------------- server


def gpu_visible() -> bool:
    """A GPU this machine's jobs could use (NVIDIA, AMD), or a platform where forking is not this simple."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd") or sys.platform != "linux"


def launch(log: str):
    """Start a warm server for the calling process (Snakemake) and point its future jobs at it: the socket
    variable is set in this process's environment before the server starts, so the server's environment is
    the jobs'. Returns the server's Popen, or None where a GPU is visible.

    The socket lives in a fresh private folder (mkdtemp: mode 0700, an unpredictable name), so that on a shared
    machine nobody else can connect to it, nor put a socket of theirs where the jobs look for ours."""
    import glob
    import shutil
    import subprocess
    import tempfile

    if gpu_visible():
        return None
    prefix = os.path.join(tempfile.gettempdir(), f"steerflow-warm-{os.getuid()}-")
    for stale in glob.glob(f"{prefix}*"):  # left by killed runs: their Snakemake is gone
        pid = stale[len(prefix):].split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and os.stat(stale).st_uid == os.getuid():
            shutil.rmtree(stale, ignore_errors=True)
    path = os.path.join(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"), "socket")
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    os.environ[SOCKET_ENV] = path
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", path, str(os.getpid()), log],
                              stdin=subprocess.DEVNULL)
    # the socket is bound before the imports (~0.1 s): wait for it, or the first jobs would find no server and
    # start cold; they then wait in its backlog while it imports
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return server


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    creds = struct.Struct("3i")
    return creds.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, creds.size))[1]


_BEFORE_IMPORTS: dict[str, str] = {}  # the server's environment before preload(); imports set some variables


def decline_reason(request: dict) -> str | None:
    """Why a job cannot be forked from this server (None: it can)."""
    if request["python"] != sys.executable:
        return f"the job runs {request['python']}, the server {sys.executable}"
    if request["cwd"] != os.getcwd():
        return f"the job runs in {request['cwd']}, the server in {os.getcwd()}"
    env, here = request["env"], _BEFORE_IMPORTS
    differ = sorted(k for k in set(env) | set(here) if k not in ALLOWED_TO_DIFFER and env.get(k) != here.get(k))
    if differ:
        return f"environment differs in {', '.join(differ[:5])}{' …' if len(differ) > 5 else ''}"
    return None


def preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional package: the job that needs it imports it (and fails) itself
            print(f"preload: {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    import pkgutil

    import steercore

    for info in pkgutil.walk_packages(steercore.__path__, "steercore."):
        try:
            importlib.import_module(info.name)
        except Exception as e:
            print(f"preload: {info.name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    for module, attrs in PRELOAD_ATTRS:
        for attr in attrs:
            try:
                getattr(importlib.import_module(module), attr)
            except Exception as e:
                print(f"preload: {module}.{attr}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def serve(path: str, parent: int) -> None:
    """Accept jobs until the parent (Snakemake) is gone; fork one child per job and report its status."""
    import selectors
    import signal

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # clients that connect now wait in the backlog until the imports are done
    listener.listen(128)

    def end(*_):  # at once: unloading torch & co. at interpreter exit takes seconds
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):  # launch's private folder, if it is empty now
            os.rmdir(os.path.dirname(path))
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    jobs: dict[int, socket.socket] = {}
    _BEFORE_IMPORTS.update(os.environ)
    preload()
    print(f"warm server ready, pid {os.getpid()}", file=sys.stderr, flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    while os.getppid() == parent:
        for _ in sel.select(timeout=0.2):
            conn, _ = listener.accept()
            pid = _start(conn, [listener, *jobs.values()])
            if pid:
                jobs[pid] = conn
        _reap(jobs)
    end()


def _start(conn: socket.socket, others: list[socket.socket]) -> int | None:
    conn.settimeout(10)
    if peer_uid(conn) != os.getuid():  # only this user's jobs (the folder is private; this is the second lock)
        conn.close()
        return None
    try:
        head, fds, _, _ = socket.recv_fds(conn, _LEN.size, 3)
        request = json.loads(_recv_exact(conn, _LEN.unpack(head)[0]))
    except (OSError, ValueError, struct.error) as e:
        print(f"bad request: {e}", file=sys.stderr, flush=True)
        conn.close()
        return None
    reason = decline_reason(request) if len(fds) == 3 else "the standard streams did not arrive"
    if reason:
        conn.sendall(b"C" + reason.encode())
        conn.close()
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for sock in others:  # the listener and the connections of other jobs
            sock.close()
        _child(conn, fds, request)  # never returns
    for fd in fds:
        os.close(fd)
    conn.sendall(b"S")
    return pid


def _reap(jobs: dict[int, socket.socket]) -> None:
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = jobs.pop(pid, None)
        if conn is not None:
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(struct.pack("!i", code if code >= 0 else 128 - code))  # killed by signal N: 128 + N
            except OSError:
                pass  # the client is gone
            conn.close()


def _child(conn: socket.socket, fds: list[int], request: dict) -> None:
    """Become the job: its streams, directory, umask, environment and argv; run the script; exit."""
    import io
    import signal
    import threading

    global _IN_CHILD
    _IN_CHILD, code = True, 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=os.isatty(1))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                      errors="backslashreplace")
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        # the job's environment, plus what the imports set (TOKENIZERS_PARALLELISM, say) as they would have in it
        imported = {k: v for k, v in os.environ.items() if k not in _BEFORE_IMPORTS}
        os.environ.clear()
        os.environ.update({**imported, **request["env"]})
        import tempfile

        tempfile.tempdir = None  # TMPDIR is per job
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and "torch" in sys.modules:  # what the variable does in a fresh process
            sys.modules["torch"].set_num_threads(int(threads))

        def orphaned():  # the client is gone (killed, or its job cancelled): so is the job
            try:
                conn.settimeout(None)
                while conn.recv(1):
                    pass
            except OSError:
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=orphaned, daemon=True).start()
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(script)
        code = _run(script)
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush(), sys.stderr.flush()
        finally:
            os._exit(code)


def _run(script: str) -> int:
    """`python script` semantics: 0, SystemExit's code (a message goes to stderr as 1), a traceback as 1."""
    import runpy
    import traceback

    try:
        runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "serve":
        sys.exit(__doc__)
    sys.modules["warm"] = sys.modules["__main__"]  # the scripts' `import warm` finds this module (and _IN_CHILD)
    with open(sys.argv[4], "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    serve(sys.argv[2], int(sys.argv[3]))
