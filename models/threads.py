"""Thread counts and OpenMP wait policy that do not collapse when the machine is busy.

Why: this torch build runs its intra-op parallel regions on GNU OpenMP (``torch/lib/libgomp.so.1``; MKL and
oneDNN ride on the same runtime). By default an OpenMP worker that reaches a barrier spins instead of sleeping.
When another process holds the cores (a farm node running two tasks, a workstation running ComfyUI beside
other work) the thread a barrier waits for is descheduled while its partner burns the time slice spinning,
once per parallel region: a per-face network of a few hundred small operators then pays a scheduler slice per
operator. Measured on a 2-core machine beside 2 busy loops (bench/threads.py): the MediaPipe mesh with 2
spinning threads took 7-13x the time of 1 thread under the same load (21-82x its quiet 1-thread time; 6x at
8 faces per call), passive ones 0.5-1.4x; 50 small 64x64 convolutions 11x; full-frame kernels do not collapse (1080p grid_sample
290 ms spinning vs 266 ms on 1 thread, since each region holds much work), and neither do OpenCV's own
threads (cv2.warpAffine 1080p 270 ms on 2 threads vs 371 ms on 1) or onnxruntime with spinning off
(models/onnx_runtime.py).

What works where:

* A process facegraph starts itself (the CLI, farm / Ray workers): :func:`configure_process` sets
  ``OMP_WAIT_POLICY=PASSIVE`` (and the thread-count variables) where the user has not set them, before torch
  is imported, and torch's thread counts. :func:`child_env` gives the same variables for a process about to
  be started (a Ray ``runtime_env``, a subprocess).
* The environment must be set BEFORE ``import torch``. libgomp reads ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT``
  once, in its load-time constructor (GCC libgomp ``env.c: initialize_env``), and ``import torch`` loads it.
  Measured (2 threads, a parallel ``a + 1`` on 200k floats then a 2 ms sleep, 300 times): process CPU time per
  region 9.6 ms with the variable unset (the idle worker spins), 0.15 ms with it set before ``import torch``,
  9.5 ms with it set after ``import torch`` but before the first parallel region: setting it afterwards does
  nothing (tests/models/test_threads.py::test_wait_policy_is_read_when_torch_is_imported holds this).
* Inside a host that imported torch before the pack (ComfyUI), the wait policy is fixed already. The only
  lever left is the thread count: a region run with one thread has no barrier partner to wait for.
  :func:`host_policy` (called once when the pack loads) records what the host's process does, and stages
  whose tensors are small (per-face mesh, iris, 3DDFA, the rasteriser on small crops) run inside
  :func:`small_stage`, which uses one thread unless the process is known to wait passively. Full-frame
  kernels keep the host's threads (they do not collapse, above). Changing torch's thread count costs well
  under a microsecond (no measurable change to the mesh's time) and is per OS thread
  (``omp_set_num_threads`` sets the calling thread's ICV; torch's ``get_num_threads`` is
  ``omp_get_max_threads``), so a stage in ComfyUI's worker thread does not change the host's other threads.

``FACEGRAPH_THREADS`` is the user's override of the intra-op thread count (``0`` or empty: automatic, the
cores this process may run on). :func:`default_threads` is the one place that reads it.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Iterator

from ..core.errors import InputError

log = logging.getLogger(__name__)

THREADS_ENV = "FACEGRAPH_THREADS"

# Variables that make idle OpenMP workers sleep at once instead of spinning.
#   OMP_WAIT_POLICY=PASSIVE: OpenMP 4.5 spec section 4.8; GNU libgomp then sets its spin count to 0.
#   KMP_BLOCKTIME=0: Intel / LLVM OpenMP (libiomp5 / libomp, used by some torch builds, e.g. conda's); its
#   default is 200 ms of spinning after each region (Intel oneAPI "Thread affinity / KMP_BLOCKTIME").
#   GNU libgomp ignores it.
WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
# Variables read by the threaded math libraries when they load: OpenMP (torch, MKL), MKL, OpenBLAS (numpy /
# scipy wheels).
COUNT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPolicy:
    """How torch's CPU threads are used in this process.

    threads: intra-op threads for stages whose tensors are large (full-frame kernels, batched networks).
    small_threads: threads for small-tensor stages (entered through :func:`small_stage`): ``threads`` where
        OpenMP workers are known to sleep when idle, else 1.
    passive: whether the OpenMP runtime was loaded with a passive wait policy (as far as this process can
        tell: the variables it was started with, or what :func:`configure_process` set before torch loaded).
    host: torch was imported before facegraph configured anything (ComfyUI): environment left alone.
    env_set: the variables this call put into ``os.environ`` (none that the user had set).
    source: where ``threads`` came from: "argument", "FACEGRAPH_THREADS", "cores" or "host".
    """

    threads: int
    small_threads: int
    passive: bool
    host: bool
    env_set: tuple[str, ...] = ()
    source: str = "cores"


_lock = threading.Lock()
_current: ThreadPolicy | None = None
_passive_before_torch = False  # configure_process set a passive policy before torch was loaded


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a farm's cpuset or ``taskset``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Intra-op threads: ``$FACEGRAPH_THREADS`` where set to a positive integer, else :func:`available_cores`.

    Raises InputError when the variable holds something other than a non-negative integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return available_cores()
    try:
        n = int(raw)
    except ValueError:
        raise InputError(f"{THREADS_ENV}={raw!r} is not a whole number",
                         hint=f"set {THREADS_ENV} to a thread count such as 1 or 4, or 0 / unset for automatic"
                         ) from None
    if n < 0:
        raise InputError(f"{THREADS_ENV}={raw!r} is negative", hint="use a thread count >= 1, or 0 for automatic")
    return n if n > 0 else available_cores()


def _source() -> str:
    raw = os.environ.get(THREADS_ENV, "").strip()
    return THREADS_ENV if raw and raw != "0" else "cores"


def _check_count(threads: object, name: str) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"{name} must be an int >= 1, got {threads!r}",
                         hint="pass None for the default (FACEGRAPH_THREADS or the core count)")
    return threads


def child_env(threads: int | None = None, *, keep_user: bool = True) -> dict[str, str]:
    """Environment variables for a process facegraph is about to start (Ray ``runtime_env``, a subprocess):
    passive OpenMP waiting and ``threads`` (default :func:`default_threads`) for every threaded library,
    plus ``FACEGRAPH_THREADS`` so the child's own policy agrees. The caller merges them into the child's
    environment. ``keep_user``: the user's own values (in this process's environment) win; False forces
    these (Ray actors sized to one CPU each)."""
    n = default_threads() if threads is None else _check_count(threads, "threads")
    env = dict(WAIT_ENV)
    env.update({k: str(n) for k in COUNT_ENV})
    env[THREADS_ENV] = str(n)
    return {k: os.environ.get(k, v) for k, v in env.items()} if keep_user else env


@functools.lru_cache(maxsize=1)
def _start_environ() -> dict[str, str]:
    """The environment this process was started with (Linux ``/proc/self/environ``; later ``os.environ``
    changes do not show there). Elsewhere: the current environment."""
    try:
        with open("/proc/self/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    out = {}
    for item in items:
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def _torch_loaded() -> bool:
    return "torch" in sys.modules


def _passive(env: dict[str, str]) -> bool:
    """Whether these variables make the OpenMP runtime wait passively."""
    if env.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return True
    return env.get("GOMP_SPINCOUNT", "").strip() == "0"  # libgomp: spin count 0 is passive waiting


def _loaded_passive() -> bool:
    """Whether the OpenMP runtime torch has loaded waits passively: set before torch by configure_process,
    or in the environment the process was started with."""
    return _passive_before_torch or _passive(_start_environ())


def configure_process(threads: int | None = None, *, load_torch: bool = False) -> ThreadPolicy:
    """Set the thread policy of a process facegraph started itself (CLI ``main``, farm / Ray workers).

    Call it first, before anything imports torch. Where the user has not set them, it sets
    ``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0`` and ``OMP/MKL/OPENBLAS_NUM_THREADS`` (= ``threads``), which
    the libraries read when they load (torch takes its intra-op count from ``OMP_NUM_THREADS``). It imports
    torch only where needed, so a command that never runs a model does not pay torch's import: where torch is
    loaded already, where ``load_torch`` is true, or where the user's own ``OMP_NUM_THREADS`` differs from
    ``threads``; then it sets ``torch.set_num_threads(threads)`` and one inter-op thread (facegraph forks no
    TorchScript tasks; left alone, with a debug line, where torch's inter-op pool has started already).

    ``threads``: default :func:`default_threads` (``FACEGRAPH_THREADS`` or the cores). Where torch was
    imported before this call the wait policy can no longer change (see the module docstring): small stages
    then run single-threaded, as under :func:`host_policy`, and the log says so.

    Returns the policy, which :func:`current_policy` returns from then on.
    """
    global _current, _passive_before_torch
    n = default_threads() if threads is None else _check_count(threads, "threads")
    source = "argument" if threads is not None else _source()
    torch_loaded = _torch_loaded()
    with _lock:
        env_set = []
        for k, v in [*WAIT_ENV.items(), *((k, str(n)) for k in COUNT_ENV)]:
            if k not in os.environ:
                os.environ[k] = v
                env_set.append(k)
        if torch_loaded:
            passive = _loaded_passive()
            if not passive:
                log.info("torch was imported before the thread policy was set: OpenMP spin-waits in this process, "
                         "so small per-face torch stages run single-threaded (set OMP_WAIT_POLICY=PASSIVE "
                         "before starting the process to let them use %d threads)", n)
        else:
            passive = _passive(dict(os.environ))
            _passive_before_torch = passive
        if torch_loaded or load_torch or os.environ.get("OMP_NUM_THREADS", "").strip() != str(n):
            import torch

            torch.set_num_threads(n)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError as exc:  # the inter-op pool has started (or was set) already
                log.debug("inter-op threads left at %d: %s", torch.get_num_interop_threads(), exc)
        _current = ThreadPolicy(threads=n, small_threads=n if passive else 1, passive=passive,
                                host=torch_loaded, env_set=tuple(env_set), source=source)
    log.debug("thread policy: %s", _current)
    return _current


def host_policy(threads: int | None = None) -> ThreadPolicy:
    """The policy inside a host process that owns torch (ComfyUI): call once when the pack is imported.

    Changes neither the environment nor torch's thread count (the host's). ``threads``: for large stages,
    default ``FACEGRAPH_THREADS`` where set, else the host's ``torch.get_num_threads()``. Small stages
    (:func:`small_stage`) use one thread unless the host was started with a passive OpenMP wait policy
    (``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=0`` in its start environment). Logs once, at INFO,
    what the user can set to change that. Returns the policy, which :func:`current_policy` returns from then on.
    """
    global _current
    policy = _host(threads)
    with _lock:
        _current = policy
    if not policy.passive and policy.threads > 1:
        log.info("OpenMP in this process spin-waits (OMP_WAIT_POLICY was not PASSIVE when it started): facegraph "
                 "runs its small per-face torch stages on 1 thread so they cannot stall when the CPU is busy; "
                 "start the host with OMP_WAIT_POLICY=PASSIVE to let them use %d", policy.threads)
    return policy


def _host(threads: int | None) -> ThreadPolicy:
    if threads is not None:
        n, source = _check_count(threads, "threads"), "argument"
    elif _source() == THREADS_ENV:
        n, source = default_threads(), THREADS_ENV
    elif _torch_loaded():
        n, source = max(1, int(sys.modules["torch"].get_num_threads())), "host"
    else:
        n, source = default_threads(), "cores"
    passive = _loaded_passive() if _torch_loaded() else _passive(dict(os.environ))
    return ThreadPolicy(threads=n, small_threads=n if passive else 1, passive=passive, host=True, source=source)


def current_policy() -> ThreadPolicy:
    """The policy set by :func:`configure_process` / :func:`host_policy`; where neither ran (a library
    user's own process), the host policy worked out now (not stored, so a later configure wins)."""
    policy = _current
    return policy if policy is not None else _host(None)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads on the calling OS thread, restoring the count after.

    Per OS thread: other threads that already ran torch keep their count. A thread that starts its first torch
    operation while the block runs takes ``n`` as its default (torch keeps one process-wide default). Costs
    about a microsecond where the count changes, nothing where it is already ``n``.
    """
    n = _check_count(n, "n")
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_stage(device: object = None) -> contextlib.AbstractContextManager:
    """The context a small-tensor CPU stage runs in (per-face mesh, iris, 3DDFA, rasteriser on small crops):
    ``torch_threads(current_policy().small_threads)``. For a device other than the CPU (``"cuda:0"``, a
    ``torch.device``, a tensor on it) it changes nothing. ``device``: None means the CPU."""
    if device is not None:
        device = getattr(device, "device", device)  # a tensor: its device
        if not str(getattr(device, "type", device)).startswith("cpu"):
            return contextlib.nullcontext()
    return torch_threads(current_policy().small_threads)


def _reset_for_tests() -> None:
    global _current, _passive_before_torch
    with _lock:
        _current = None
        _passive_before_torch = False
