"""LiteRT (Google's TFLite interpreter, XNNPACK delegate) as the CPU runtime of the TFLite face graphs.

Why: MediaPipe ships its face models as TFLite flatbuffers and runs them on LiteRT's XNNPACK kernels. facegraph
ports the same graphs to torch (``tflite_torch.TFLiteModule``) so they run on CUDA and export to ONNX, but on the
CPU LiteRT is several times faster. Measured on a 2-core machine (bench/litert.py, 2 threads, medians): the
478-point mesh (face_landmarks_detector.tflite, 256 x 256) 5.2 ms per face against 20.2 ms for the torch port's
frozen trace; iris 3.3 ms per eye pair against 17.7; BlazeFace short range 1.4 ms against 8.0.

Where it is used: the model wrappers (``landmarkers.MediaPipeMesh`` mesh and blendshapes, ``landmarkers.IrisModel``,
``detectors.FaceDetector`` for BlazeFace) keep their torch port and hold a :class:`CpuFastPath` beside it. At each
call, when the torch port's weights are on the CPU and :func:`use_litert` says so, the LiteRT graph runs instead
(built on first use). On any other device the torch port runs, unchanged.

The choice is ``FACEGRAPH_TFLITE_RUNTIME`` (:data:`RUNTIME_ENV`), read in one place, :func:`tflite_runtime`:

* ``auto`` (default, also empty or unset): LiteRT on the CPU where ``ai_edge_litert`` imports, else the torch port
  (the package has no wheel for every platform, e.g. Windows);
* ``litert``: LiteRT on the CPU; a ModelError at the first CPU call when the package is not installed;
* ``torch``: always the torch port.

A wrapper may also be given the choice as its ``tflite_runtime`` option, which wins over the variable.

Determinism: :meth:`LiteRTGraph.run` invokes the graph once per item (batch 1), so a face's outputs do not depend
on which other faces share the call (chunked farm renders must merge bit-identically with single runs).
One interpreter resized to N items gave the same bits for the mesh at N = 8 but only about 10 % more speed
(bench/litert.py), and nothing guarantees XNNPACK picks the same kernels for every N, so it is not used.

Threads: XNNPACK runs on its own thread pool (pthreadpool), not OpenMP, so OpenMP's spin-wait collapse under a
competing load (models/threads.py) does not apply: measured with two busy processes on the 2 cores, the mesh
took 13.5 ms at 2 threads and 15.6 ms at 1 (quiet: 5.2 and 8.7; the torch port 48.7 and 20.2). The count is the model's ``threads`` where given, else
``threads.current_policy().threads`` (``FACEGRAPH_THREADS`` or the cores), fixed when the interpreter is built.
An interpreter is not thread-safe: each :class:`LiteRTGraph` serialises its calls with a lock.
"""
from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..core.errors import InputError, ModelError

log = logging.getLogger(__name__)

RUNTIME_ENV = "FACEGRAPH_TFLITE_RUNTIME"
Runtime = Literal["auto", "litert", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "litert", "torch")
_INSTALL_HINT = ("install LiteRT (pip install ai-edge-litert), or set FACEGRAPH_TFLITE_RUNTIME=torch (or auto) to "
                 "run the torch port")


def tflite_runtime(option: str | None = None) -> str:
    """The TFLite runtime choice: ``option`` where given, else ``$FACEGRAPH_TFLITE_RUNTIME``, else "auto".

    Returns one of :data:`RUNTIMES`. Raises InputError for any other value (naming where it came from)."""
    import os

    source = "tflite_runtime" if option is not None else RUNTIME_ENV
    raw = option if option is not None else os.environ.get(RUNTIME_ENV, "")
    value = str(raw).strip().lower() or "auto"
    if value not in RUNTIMES:
        raise InputError(f"{source}={raw!r} is not a TFLite runtime",
                         hint="use auto (LiteRT on the CPU where installed), litert or torch")
    return value


@functools.lru_cache(maxsize=1)
def _interpreter_class():
    """ai_edge_litert's Interpreter class, or None where the package does not import."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except Exception as exc:  # ImportError, or a broken native library
        log.debug("ai_edge_litert is not usable (%s): TFLite graphs run on the torch port", exc)
        return None
    return Interpreter


def litert_available() -> bool:
    """Whether ``ai_edge_litert`` imports in this process (checked once)."""
    return _interpreter_class() is not None


def _is_cpu(device: object) -> bool:
    device = getattr(device, "device", device)  # a tensor: its device
    return str(getattr(device, "type", device)).startswith("cpu")


def use_litert(device: object, option: str | None = None) -> bool:
    """Whether a TFLite graph whose torch port lives on ``device`` should run on LiteRT now.

    device: a device string, ``torch.device`` or tensor. option: a wrapper's ``tflite_runtime`` option (None:
    the environment variable). False off the CPU (LiteRT here has no accelerator delegate) and for "torch";
    for "auto" True where the package imports; for "litert" True, or ModelError where it does not import."""
    choice = tflite_runtime(option)
    if choice == "torch" or not _is_cpu(device):
        return False
    if litert_available():
        return True
    if choice == "litert":
        raise ModelError(f"{RUNTIME_ENV}=litert but ai_edge_litert does not import", hint=_INSTALL_HINT)
    return False


def read_graph_bytes(path: str | Path, member: str | None = None) -> bytes:
    """The flatbuffer of a .tflite file, or of ``member`` of a MediaPipe ``.task`` bundle (a zip)."""
    path = Path(path)
    if member is None:
        return path.read_bytes()
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read {member} from the bundle: {exc}", file=str(path)) from None


class LiteRTGraph:
    """One TFLite graph on LiteRT's interpreter (XNNPACK), batch-1 invocations over a batch.

    Convention: ``run(x)`` takes x (N, ...) float32 whose trailing dimensions are the graph's input's (NHWC for
    images, e.g. (N, 256, 256, 3) for the mesh), any values the graph expects (the caller scales them), and
    returns the graph's outputs in ``outputs`` order (tensor indices in the flatbuffer's subgraph, as
    ``TFLiteModule`` returns them; default: the interpreter's output order), each float32 with the batch of N:
    an output whose first dimension is 1 is concatenated over the items along it (the torch port's shape for
    batch N), any other output (e.g. the blendshapes' (52,)) is returned as is for N = 1 and stacked to
    (N, ...) otherwise. Each item is its own invocation, so its outputs do not depend on the others.
    """

    def __init__(self, blob: bytes, *, name: str = "", threads: int = 0,
                 outputs: Sequence[int] | None = None) -> None:
        cls = _interpreter_class()
        if cls is None:
            raise ModelError("ai_edge_litert does not import", hint=_INSTALL_HINT, file=name or None)
        if threads is None or threads <= 0:
            from .threads import current_policy

            threads = current_policy().threads
        self.name = name
        self.threads = int(threads)
        try:
            self._interp = cls(model_content=bytes(blob), num_threads=self.threads)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"LiteRT cannot load the graph: {exc}", file=name or None) from None
        inputs = self._interp.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"LiteRTGraph runs one-input graphs, this one has {len(inputs)}", file=name or None)
        self._input = int(inputs[0]["index"])
        self.input_shape = tuple(int(v) for v in inputs[0]["shape"])
        if inputs[0]["dtype"] != np.float32:
            raise ModelError(f"the graph's input is {inputs[0]['dtype']}, not float32", file=name or None)
        details = {int(d["index"]): d for d in self._interp.get_output_details()}
        order = list(details) if outputs is None else [int(i) for i in outputs]
        missing = [i for i in order if i not in details]
        if missing:
            raise ModelError(f"tensors {missing} are not outputs of the LiteRT graph (outputs: {sorted(details)})",
                             file=name or None)
        self._outputs = order
        self.output_shapes = [tuple(int(v) for v in details[i]["shape"]) for i in order]
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path, member: str | None = None, *, threads: int = 0,
                  outputs: Sequence[int] | None = None) -> "LiteRTGraph":
        """A graph from a .tflite file or a ``.task`` bundle's member (see :func:`read_graph_bytes`)."""
        name = f"{Path(path).name}{':' + member if member else ''}"
        return cls(read_graph_bytes(path, member), name=name, threads=threads, outputs=outputs)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs for a batch x (N, ...) float32, one invocation per item (see the class docstring)."""
        x = np.asarray(x)
        item = self.input_shape[1:]
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != item:
            raise InputError(f"x must be (N, {', '.join(map(str, item))}) for {self.name or 'this graph'}, "
                             f"got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return [np.zeros((0,) + s[1:] if s and s[0] == 1 else (0,) + s, np.float32) for s in self.output_shapes]
        x = np.ascontiguousarray(x, dtype=np.float32)
        per_item: list[list[np.ndarray]] = []
        with self._lock:
            for k in range(x.shape[0]):
                self._interp.set_tensor(self._input, x[k:k + 1])
                self._interp.invoke()
                per_item.append([self._interp.get_tensor(i) for i in self._outputs])  # copies
        if len(per_item) == 1:
            return [np.asarray(o, np.float32) for o in per_item[0]]
        out = []
        for parts, shape in zip(zip(*per_item), self.output_shapes):
            joined = np.concatenate(parts) if shape and shape[0] == 1 else np.stack(parts)
            out.append(joined.astype(np.float32, copy=False))
        return out


class CpuFastPath:
    """LiteRT beside a torch port of the same TFLite graph: the graph is built on first use.

    path / member: where the flatbuffer is (file, or ``.task`` member). outputs: the torch port's output tensor
    indices (``TFLiteModule.graph.outputs``), so both runtimes return outputs in one order. threads: the model's
    thread count (0: the thread policy's). option: the wrapper's ``tflite_runtime`` option (None: the variable).
    """

    def __init__(self, path: str | Path, member: str | None = None, *, outputs: Sequence[int] | None = None,
                 threads: int = 0, option: str | None = None) -> None:
        if option is not None:
            tflite_runtime(option)  # reject a bad option when the model is made, not at its first call
        self.path, self.member = Path(path), member
        self.outputs = None if outputs is None else tuple(int(i) for i in outputs)
        self.threads = threads
        self.option = option
        self._graph: LiteRTGraph | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def active(self, device: object) -> bool:
        """Whether the next call on a torch port living on ``device`` goes to LiteRT (see :func:`use_litert`)."""
        return use_litert(device, self.option)

    def graph(self) -> LiteRTGraph:
        """The LiteRT graph (built once per process, thread-safe). A process forked from one that had built it
        builds its own: XNNPACK's worker threads do not survive ``fork``."""
        import os

        pid = os.getpid()
        if self._graph is not None and self._pid != pid:
            self._graph, self._lock = None, threading.Lock()  # the parent's lock may have been held at the fork
        with self._lock:
            if self._graph is None:
                self._graph = LiteRTGraph.from_file(self.path, self.member, threads=self.threads, outputs=self.outputs)
                self._pid = pid
            return self._graph

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """:meth:`LiteRTGraph.run` on the graph."""
        return self.graph().run(x)
