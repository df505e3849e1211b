"""Run a template's chunks on Ray: a pool of long-lived actors, retries, one progress bar.

``facegraph run TEMPLATE --frames A-B --chunk N --handles K --engine ray [--address ADDR] [--workers W]``
splits the frame range with :func:`facegraph.plugin.chunks.plan_chunks` and runs each chunk with
:func:`facegraph.plugin.chunks.run_chunk` (the chunk's frames plus ``handles`` frames each side for the temporal
filters; only the chunk's own frames are written) inside a Ray actor. Actors live for the whole job, so each
loads its models once (the process-wide model cache of the actor's process) and runs many chunks. A chunk
whose actor died or raised is run again on a fresh actor, up to ``retries`` times (an
:class:`~facegraph.core.errors.InputError` is the user's and fails at once). Chunks write their frames
themselves, into ``output_dir``: on a cluster of several machines it, ``input_dir`` and ``cache_dir`` must be
on storage every node sees under the same path (the shot cache there is what keeps shot-level state, such as
track ids, the same in every chunk).

Resources: one GPU per actor where the cluster has GPUs, else one CPU. Inside an actor torch runs on one
thread and OpenMP threads sleep when idle (``OMP_WAIT_POLICY=PASSIVE``), so W actors on W cores do not fight
over the cores. The driver's ``FACEGRAPH_*`` environment variables (model mirror, offline flag, cache) travel
to the actors.

``address=None`` starts a private single-machine cluster for the job (bound to 127.0.0.1, no dashboard, no
usage statistics, its files under a fresh folder in /tmp, a small object store: chunks return small JSON
summaries) and stops it at the end; an address (``host:port``, or ``auto``) connects to a running cluster and
only disconnects at the end. Where this process is already connected to Ray (``ray.init`` done by the
caller), that connection is used and left open.

Ray is an optional extra (``pip install facegraph[ray]``); it is imported only when the Ray engine runs.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

from ..core import progress as progress_mod
from ..core.errors import FacegraphError, GraphError, InputError

log = logging.getLogger(__name__)

EngineKind = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")

# Ray refuses an object store below ray._private.ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES (75 MiB); chunks
# return small JSON summaries (frames travel through files), so a little above that minimum is plenty.
OBJECT_STORE_BYTES = 96 * 1024 * 1024
# How long actors may take to start (process spawn + importing torch and facegraph: ~3 s each here; a busy
# autoscaling cluster may need minutes to find room) before the job fails with a clear error instead of waiting.
ACTOR_START_TIMEOUT_S = 600.0
# Seconds between checks for a finished chunk, so an interruption (ComfyUI's stop button) is seen promptly.
POLL_S = 0.5
# Environment of every actor, set before its process imports torch: OpenMP threads that sleep instead of
# spinning when idle (OMP_WAIT_POLICY: OpenMP 4.5 spec section 4.8, read by GNU libgomp when it loads;
# KMP_BLOCKTIME=0 the same for Intel / LLVM OpenMP), since a spinning worker steals the core of the other actor;
# one thread in every threaded maths library (OpenMP / MKL / OpenBLAS read these when they load) and in
# facegraph's own models (FACEGRAPH_THREADS, models/threads.py).
ACTOR_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1", "FACEGRAPH_THREADS": "1"}
MISSING_RAY = "the Ray engine needs Ray, which is not installed"
MISSING_RAY_HINT = "pip install facegraph[ray] (or use --engine local)"


def import_ray():
    """The ``ray`` module, or an InputError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError(MISSING_RAY, hint=MISSING_RAY_HINT, missing=getattr(exc, "name", None) or "ray") from None
    return ray


# ------------------------------------------------------------------------------------------------ actors
class ChunkWorker:
    """What each Ray actor is: a process that runs chunks one after another, models cached between them.

    ``chunk_fn`` is the function a chunk runs (default :func:`facegraph.plugin.chunks.run_chunk`, imported in
    the actor); tests pass a stand-in. For run_chunk the actor imports torch (one thread) and the node classes
    when it starts (seconds: part of the actors' start-up, not of the first chunk); a stand-in that imports
    torch later gets one thread from OMP_NUM_THREADS=1 (:data:`ACTOR_ENV`), which torch reads when it loads.
    Models load on first use and stay in the process's model cache for the actor's later chunks.
    """

    def __init__(self, chunk_fn: Callable[..., dict] | None = None) -> None:
        if chunk_fn is None:
            import torch

            from ..nodes import NODE_CLASSES  # noqa: F401  (the graph runner's node registry, imported once)

            torch.set_num_threads(1)
        self._fn = chunk_fn
        self._chunks = 0

    def ready(self) -> int:
        """The actor's process id, once it has started."""
        return os.getpid()

    def run(self, template: str, assignments: dict, frames: tuple[int, int], handles: int, input_dir: str,
            output_dir: str, cache_dir: str, extra: dict | None = None) -> dict:
        started = time.time()  # wall clock: the driver compares it with when it sent the chunk
        fn = self._fn
        if fn is None:
            from .chunks import run_chunk as fn
        t0 = time.perf_counter()
        summary = fn(template, dict(assignments), tuple(frames), handles, input_dir=input_dir,
                     output_dir=output_dir, cache_dir=cache_dir, **(extra or {}))
        self._chunks += 1
        return {"summary": summary, "seconds": time.perf_counter() - t0, "pid": os.getpid(),
                "started": started, "chunk_in_actor": self._chunks}


# ------------------------------------------------------------------------------------------------ cluster
@contextlib.contextmanager
def _loopback_only(ray) -> Iterator[None]:
    """Make a cluster started by this process advertise (and so bind) 127.0.0.1 only.

    Ray resolves a requested 127.0.0.1 to the machine's outward address on Linux (services.
    resolve_ip_for_localhost) unless its "cluster" mode is off (ray_constants.ENABLE_RAY_CLUSTER, from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, off by default on macOS and Windows for the same reason); with the node
    address 127.0.0.1 its gRPC servers listen on loopback only. Usage statistics stay off
    (RAY_USAGE_STATS_ENABLED=0). The previous values come back afterwards.
    """
    from ray._private import ray_constants

    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    saved_env = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclasses.dataclass
class _Connection:
    owned: bool          # True: we started or connected, so we shut down / disconnect at the end
    temp_dir: str | None  # the private cluster's folder, removed at the end
    seconds: float        # time to start / connect


def start_local_cluster(ray, workers: int | None = None) -> _Connection:
    """Start a private single-machine cluster in this process (see the module docstring); returns how."""
    temp_dir = tempfile.mkdtemp(prefix="facegraph-ray-", dir="/tmp")
    t0 = time.perf_counter()
    try:
        with _loopback_only(ray):
            ray.init(address="local", num_cpus=int(workers or os.cpu_count() or 1),
                     include_dashboard=False, _temp_dir=temp_dir, object_store_memory=OBJECT_STORE_BYTES,
                     _node_ip_address="127.0.0.1", configure_logging=False, log_to_driver=True)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return _Connection(True, temp_dir, time.perf_counter() - t0)


def _connect(ray, address: str | None, workers: int | None) -> _Connection:
    if ray.is_initialized():
        return _Connection(False, None, 0.0)
    if address is None:
        return start_local_cluster(ray, workers)
    t0 = time.perf_counter()
    try:
        ray.init(address=address, configure_logging=False, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot connect to the Ray cluster at {address!r}: {exc}",
                         hint="start one with `ray start --head` and pass its address, or omit --address "
                              "to run on a private local cluster") from None
    return _Connection(True, None, time.perf_counter() - t0)


def stop_cluster(ray, conn: _Connection) -> None:
    """Undo :func:`start_local_cluster` (stop the cluster, remove its folder) or a connection this module
    made (disconnect); a connection it found already open is left alone."""
    if conn.owned:
        ray.shutdown()
    if conn.temp_dir:
        shutil.rmtree(conn.temp_dir, ignore_errors=True)


def _actor_resources(ray) -> tuple[dict, int]:
    """(actor options, how many actors the cluster can hold at once)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus > 0:
        return {"num_gpus": 1}, gpus
    return {"num_cpus": 1}, max(1, int(res.get("CPU", 1)))


def _actor_env() -> dict[str, str]:
    """The driver's FACEGRAPH_* variables (model mirror, offline flag, cache), then :data:`ACTOR_ENV`."""
    env = {k: v for k, v in os.environ.items() if k.startswith("FACEGRAPH_")}
    env.update(ACTOR_ENV)
    return env


def _absolute(path: str) -> str:
    """A folder as an absolute path of the driver (actors do not share its working folder); "" = the driver's
    working folder (what "" means to run_chunk in this process)."""
    return str(Path(path or ".").resolve())


def _template_path(template: str) -> str:
    p = Path(template)
    return str(p.resolve()) if p.exists() else template


# ------------------------------------------------------------------------------------------------ the job
def run_on_ray(template: str, assignments: Mapping[str, Any], frames: tuple[int, int], *, chunk: int,
               handles: int, address: str | None = None, workers: int | None = None, input_dir: str = "",
               output_dir: str = "", cache_dir: str = "", retries: int = 2,
               progress: progress_mod.Reporter | None = None,
               chunk_fn: Callable[..., dict] | None = None, analysis_pass: bool | None = None) -> dict:
    """Run ``template`` over ``frames`` in chunks of ``chunk`` frames on a pool of Ray actors.

    Convention: ``frames`` is an inclusive (first, last) pair of frame numbers; each chunk is run by
    ``plugin.chunks.run_chunk(template, assignments, (a, b), handles, input_dir=, output_dir=, cache_dir=)``
    (``chunk_fn`` replaces it, for tests: it must be picklable by cloudpickle, e.g. a closure, and take the
    extra keywords ``shot`` and ``analysis_pass``). ``analysis_pass``: run every chunk's analysis pass first
    (:func:`chunk_passes`; None: when the template has Analyse Shot, and never for a ``chunk_fn``). Relative
    folders and a template file path are made absolute on this machine before they travel. ``workers``: how
    many actors (default: as many as the cluster has GPUs, else CPUs; never more than there are chunks; on a
    running cluster never more than it can hold). ``retries``: how many more times a failed chunk runs, each
    time on a fresh actor. ``progress``: a :class:`~facegraph.core.progress.Reporter` to install for the job
    (default: the enclosing one); one task counts the chunks' own frames as chunks finish.

    Returns a JSON-able summary: ``engine``, ``frames``, ``chunk``, ``handles``, ``workers``, ``resources``
    ("gpu" | "cpu"), ``retries`` (chunk runs that failed and were retried), ``startup_s`` (start / connect the
    cluster), ``actors_s`` (until every actor had started), ``analysis_s`` (the analysis pass; 0 without one),
    ``seconds`` (the whole job) and ``chunks`` (the render pass): per
    chunk in frame order ``{"frames", "attempts", "pid", "seconds" (inside the actor), "round_trip_s"
    (dispatch to result, seen by this process), "start_delay_s" (dispatch to the actor starting it, by the
    two machines' wall clocks), "summary" (what run_chunk returned)}``.

    Raises InputError for bad arguments or a missing Ray; the chunk's own error (with ``chunk=`` and
    ``attempts=`` context) or a GraphError when a chunk still fails after ``retries`` retries.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a whole number of frames >= 1, got {chunk!r}")
    if not isinstance(handles, int) or handles < 0:
        raise InputError(f"handles must be a whole number >= 0, got {handles!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a whole number >= 1, got {workers!r}", hint="or omit --workers")
    if not isinstance(retries, int) or retries < 0:
        raise InputError(f"retries must be a whole number >= 0, got {retries!r}")
    ray = import_ray()
    from .chunks import plan_chunks

    plan = [tuple(int(f) for f in c) for c in plan_chunks(tuple(frames), chunk)]
    if not plan:
        raise InputError(f"frames {frames!r} hold no frame to run")
    if address is not None and not cache_dir and not os.environ.get("FACEGRAPH_SHOT_CACHE"):
        log.warning("no --cache folder: each node of the Ray cluster keeps its own shot cache; give one on "
                    "storage every node sees so the chunks of a shot share it (and facegraph merge can use it)")
    folders = (_absolute(input_dir), _absolute(output_dir), _absolute(cache_dir) if cache_dir else "")
    job = _Job(ray, str(_template_path(template)), dict(assignments), plan, handles, folders, retries, chunk_fn,
               analysis_pass)
    t0 = time.perf_counter()
    conn = _connect(ray, address, min(workers or os.cpu_count() or 1, len(plan)))
    try:
        with contextlib.ExitStack() as stack:
            if progress is not None:
                stack.enter_context(progress_mod.reporting(progress))
            out = job.run(workers, running_cluster=address is not None or not conn.owned)
    finally:
        stop_cluster(ray, conn)
    out.update(frames=[int(frames[0]), int(frames[1])], chunk=chunk, handles=handles,
               startup_s=round(conn.seconds, 3), seconds=round(time.perf_counter() - t0, 3))
    return out


class _Job:
    def __init__(self, ray, template: str, assignments: dict, plan: list[tuple[int, int]], handles: int,
                 folders: tuple[str, str, str], retries: int, chunk_fn, analysis_pass: bool | None) -> None:
        self.ray, self.template, self.assignments, self.plan = ray, template, assignments, plan
        self.handles, self.folders, self.retries, self.chunk_fn = handles, folders, retries, chunk_fn
        self.passes = chunk_passes(template, assignments, plan, analysis_pass, chunk_fn)
        self.extra: dict = {}

    def _new_actor(self):
        return self.actor_cls.options(**self.options).remote(self.chunk_fn)

    def _dispatch(self, actor, idx: int):
        a, b = self.plan[idx]
        handles = 0 if self.extra.get("analysis_pass") else self.handles
        ref = actor.run.remote(self.template, self.assignments, (a, b), handles, *self.folders, self.extra)
        return ref

    def run(self, workers: int | None, running_cluster: bool) -> dict:
        ray = self.ray
        options, capacity = _actor_resources(ray)
        want = min(workers or capacity, len(self.plan))
        if running_cluster and want > capacity:
            log.warning("the Ray cluster holds %d actors at once (%s); using %d, not %d", capacity,
                        "GPUs" if "num_gpus" in options else "CPUs", capacity, want)
            want = capacity
        self.options = {**options, "runtime_env": {"env_vars": _actor_env()}, "max_restarts": 0}
        self.actor_cls = ray.remote(ChunkWorker)
        t0 = time.perf_counter()
        actors = [self._new_actor() for _ in range(want)]
        try:
            self._wait_ready(actors)
            actors_s = time.perf_counter() - t0
            failures, analysis_s = 0, 0.0
            for extra in self.passes:
                self.extra = extra
                t_pass = time.perf_counter()
                records, failed = self._loop(actors)
                failures += failed
                if extra.get("analysis_pass"):
                    analysis_s = time.perf_counter() - t_pass
        finally:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
        return {"engine": "ray", "workers": want, "resources": "gpu" if "num_gpus" in options else "cpu",
                "retries": failures, "actors_s": round(actors_s, 3), "analysis_s": round(analysis_s, 3),
                "chunks": records}

    def _wait_ready(self, actors: list) -> None:
        ray = self.ray
        refs = [a.ready.remote() for a in actors]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=ACTOR_START_TIMEOUT_S)
        if pending:
            raise GraphError(f"{len(pending)} of {len(refs)} Ray actors did not start within "
                             f"{ACTOR_START_TIMEOUT_S:.0f} s", hint=f"cluster resources: {ray.cluster_resources()}; "
                             "pass a smaller --workers")
        try:
            ray.get(ready)
        except ray.exceptions.RayError as exc:
            raise GraphError(f"a Ray actor failed to start: {_cause(exc)}",
                             hint="is facegraph installed (same version) on every node?") from None

    def _loop(self, actors: list) -> tuple[list[dict], int]:
        ray = self.ray
        todo: collections.deque[tuple[int, int]] = collections.deque((i, 0) for i in range(len(self.plan)))
        free = list(actors)
        running: dict[Any, tuple] = {}  # ref -> (chunk, failed attempts, actor, perf_counter, wall clock) at dispatch
        records: list[dict | None] = [None] * len(self.plan)
        failures = 0
        total = sum(b - a + 1 for a, b in self.plan)
        what = "analysis pass: " if self.extra.get("analysis_pass") else ""
        with progress_mod.task(total, f"ray: {what}{len(self.plan)} chunks on {len(actors)} workers") as bar:
            # on an error or an interruption, chunks still running stop when the caller kills their actors
            while todo or running:
                while todo and free:
                    idx, failed = todo.popleft()
                    actor = free.pop()
                    running[self._dispatch(actor, idx)] = (idx, failed, actor, time.perf_counter(), time.time())
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                bar.check_interrupt()
                for ref in done:
                    idx, failed, actor, t0, sent = running.pop(ref)
                    a, b = self.plan[idx]
                    try:
                        got = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failed += 1
                        failures += 1
                        cause = _cause(exc)
                        if isinstance(cause, InputError) or failed > self.retries:
                            died = isinstance(exc, ray.exceptions.RayActorError)
                            raise _final_error(cause, died, (a, b), failed) from None
                        self._replace(actors, actor, free)
                        log.warning("chunk %d-%d failed (attempt %d of %d), retrying on a fresh worker: %s",
                                    a, b, failed, self.retries + 1, _one_line(cause))
                        todo.appendleft((idx, failed))
                        continue
                    free.append(actor)
                    records[idx] = {"frames": [a, b], "attempts": failed + 1, "pid": got["pid"],
                                    "seconds": round(got["seconds"], 4),
                                    "round_trip_s": round(time.perf_counter() - t0, 4),
                                    "start_delay_s": round(got["started"] - sent, 4), "summary": got["summary"]}
                    bar.advance(b - a + 1)
        return [r for r in records if r is not None], failures

    def _replace(self, actors: list, dead, free: list) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(dead, no_restart=True)
        fresh = self._new_actor()
        actors[actors.index(dead)] = fresh
        free.append(fresh)


def _cause(exc: BaseException) -> BaseException:
    """The chunk's own exception inside a Ray error (RayTaskError.cause), else the Ray error itself."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _final_error(cause: BaseException, died: bool, frames: tuple[int, int], attempts: int) -> Exception:
    where = f"{frames[0]}-{frames[1]}"
    if isinstance(cause, FacegraphError):
        return cause.with_context(chunk=where, attempts=attempts)
    what = "its Ray worker died" if died else _one_line(cause)
    return GraphError(f"chunk failed after {attempts} attempt(s): {what}", chunk=where, attempts=attempts,
                      hint="see the worker's log above" if died else None)


# ------------------------------------------------------------------------------------------------ engines
@dataclasses.dataclass(frozen=True)
class Engine:
    """Where a chunked template run happens: ``local`` (this process, chunks one after another) or ``ray``.

    ``address``: a running Ray cluster (``host:port`` or ``auto``; ray only); ``workers``: how many Ray actors
    (ray only; default: one per GPU, else per CPU).
    """

    kind: EngineKind = "local"
    address: str | None = None
    workers: int | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise InputError(f"engine {self.kind!r} is not one of {ENGINES}")
        if self.kind == "local" and (self.address is not None or self.workers is not None):
            raise InputError("--address and --workers belong to --engine ray",
                             hint="add --engine ray, or drop them")
        for name in ("workers", "chunk"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"--{name} must be a whole number >= 1, got {v!r}")

    def chunk_for(self, frames: tuple[int, int]) -> int:
        """Frames per chunk: :attr:`chunk`, else local: the whole range; ray: the range split evenly over
        ``workers`` (else this machine's cores)."""
        if self.chunk is not None:
            return self.chunk
        n = int(frames[1]) - int(frames[0]) + 1
        if self.kind == "local":
            return max(1, n)
        return max(1, math.ceil(n / (self.workers or os.cpu_count() or 1)))

    def run(self, template: str, assignments: Mapping[str, Any], frames: tuple[int, int], *, handles: int,
            chunk: int | None = None, input_dir: str = "", output_dir: str = "", cache_dir: str = "",
            retries: int = 2, progress: progress_mod.Reporter | None = None) -> dict:
        """Run every chunk of ``frames`` (inclusive frame numbers; ``chunk`` frames each, default
        :meth:`chunk_for`) and return the job's summary (see :func:`run_on_ray`; the local engine returns the
        same keys, without the Ray timings)."""
        chunk = chunk if chunk is not None else self.chunk_for(frames)
        if self.kind == "ray":
            return run_on_ray(template, assignments, frames, chunk=chunk, handles=handles, address=self.address,
                              workers=self.workers, input_dir=input_dir, output_dir=output_dir,
                              cache_dir=cache_dir, retries=retries, progress=progress)
        return run_local(template, assignments, frames, chunk=chunk, handles=handles, input_dir=input_dir,
                         output_dir=output_dir, cache_dir=cache_dir, progress=progress)


def chunk_passes(template: str, assignments: Mapping[str, Any], plan: list[tuple[int, int]],
                 analysis_pass: bool | None, chunk_fn: Callable[..., dict] | None = None) -> list[dict]:
    """The passes of a chunked job over ``plan``, as the extra keyword arguments of each chunk's run_chunk
    (``shot``, ``analysis_pass``): an analysis pass first (every chunk's frames into the shot cache, so each
    render chunk decides tracks and smoothing over the whole shot, as a single run) when ``analysis_pass`` is
    True, or None (auto) and the template has a shot analysis node and there is more than one chunk; then the
    render pass. Both know the shot (the plan's whole range). With a stand-in ``chunk_fn`` (tests) None means
    no analysis pass (its template need not be a real one)."""
    shot = (plan[0][0], plan[-1][1])
    if analysis_pass is None and chunk_fn is not None:
        analysis_pass = False
    if analysis_pass is None:
        from .chunks import needs_analysis_pass

        analysis_pass = len(plan) > 1 and needs_analysis_pass(template, assignments)
    render = {"shot": shot}
    return [{"shot": shot, "analysis_pass": True}, render] if analysis_pass else [render]


def run_local(template: str, assignments: Mapping[str, Any], frames: tuple[int, int], *, chunk: int,
              handles: int, input_dir: str = "", output_dir: str = "", cache_dir: str = "",
              progress: progress_mod.Reporter | None = None, chunk_fn: Callable[..., dict] | None = None,
              analysis_pass: bool | None = None) -> dict:
    """The same job as :func:`run_on_ray`, chunk after chunk in this process (no retries: an error stops it)."""
    from .chunks import plan_chunks

    if not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a whole number of frames >= 1, got {chunk!r}")
    plan = [tuple(int(f) for f in c) for c in plan_chunks(tuple(frames), chunk)]
    passes = chunk_passes(template, assignments, plan, analysis_pass, chunk_fn)
    if chunk_fn is None:
        from .chunks import run_chunk as chunk_fn
    t_job = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if progress is not None:
            stack.enter_context(progress_mod.reporting(progress))
        analysis_s = 0.0
        for extra in passes:
            records = []
            first = extra.get("analysis_pass", False)
            t_pass = time.perf_counter()
            with progress_mod.task(sum(b - a + 1 for a, b in plan),
                                   f"{'analysis pass: ' if first else ''}{len(plan)} chunks") as bar:
                for a, b in plan:
                    t0 = time.perf_counter()
                    summary = chunk_fn(template, dict(assignments), (a, b), 0 if first else handles,
                                       input_dir=input_dir, output_dir=output_dir, cache_dir=cache_dir, **extra)
                    records.append({"frames": [a, b], "attempts": 1, "pid": os.getpid(),
                                    "seconds": round(time.perf_counter() - t0, 4), "summary": summary})
                    bar.advance(b - a + 1)
            if first:
                analysis_s = time.perf_counter() - t_pass
    return {"engine": "local", "analysis_s": round(analysis_s, 3), "workers": 1, "resources": "cpu", "retries": 0, "frames": [int(frames[0]),
            int(frames[1])], "chunk": chunk, "handles": handles, "seconds": round(time.perf_counter() - t_job, 3),
            "chunks": records}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray``, ``--address ADDR``, ``--workers N``, ``--chunk N`` for ``facegraph run``
    (with its ``--frames A-B --handles K --cache DIR``)."""
    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: chunks one after another in this process; ray: on a pool of Ray actors "
                        "(pip install facegraph[ray])")
    g.add_argument("--address", default=None,
                   help="a running Ray cluster (host:port, or auto); default: a private local one for the job")
    g.add_argument("--workers", type=int, default=None,
                   help="Ray actors (default: one per GPU of the cluster, else one per CPU)")
    g.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="frames per chunk of --frames (default: local one chunk; ray the range split evenly "
                        "over the workers)")


def engine_from_args(args: argparse.Namespace) -> Engine:
    """The :class:`Engine` that :func:`add_engine_arguments`' options name (InputError for a bad mix)."""
    return Engine(getattr(args, "engine", "local") or "local", getattr(args, "address", None),
                  getattr(args, "workers", None), getattr(args, "chunk", None))
