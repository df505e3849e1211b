"""Thread policy (models/threads.py): environment left to the user, counts applied and restored, and a real
per-face torch network that stays near its quiet time beside a competing load."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.models import threads as th

POLICY_VARS = [*th.WAIT_ENV, *th.COUNT_ENV, th.THREADS_ENV, "GOMP_SPINCOUNT"]


@pytest.fixture
def clean(monkeypatch):
    """No policy variables, no stored policy, torch's thread count and inter-op setter restored after."""
    for k in POLICY_VARS:
        monkeypatch.delenv(k, raising=False)
    interop = []
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: interop.append(n))
    monkeypatch.setattr(th, "_start_environ", lambda: {})  # as if the process was started without them
    before = torch.get_num_threads()
    th._reset_for_tests()
    yield interop
    th._reset_for_tests()
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------- counts
def test_default_threads_reads_the_override(clean, monkeypatch):
    assert th.default_threads() == th.available_cores()
    monkeypatch.setenv(th.THREADS_ENV, "3")
    assert th.default_threads() == 3
    monkeypatch.setenv(th.THREADS_ENV, "0")
    assert th.default_threads() == th.available_cores()
    for bad in ("two", "-1", "1.5"):
        monkeypatch.setenv(th.THREADS_ENV, bad)
        with pytest.raises(InputError, match=th.THREADS_ENV):
            th.default_threads()


def test_bad_counts_are_input_errors(clean):
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(InputError):
            th.configure_process(bad)
        with pytest.raises(InputError):
            with th.torch_threads(bad):
                pass


# ---------------------------------------------------------------------------------------- environment
def test_configure_sets_passive_and_counts_where_unset(clean, monkeypatch):
    monkeypatch.setattr(th, "_torch_loaded", lambda: False)
    torch.set_num_threads(2)
    policy = th.configure_process(1)  # OMP_NUM_THREADS=1 is now set: torch would take it when it loads
    assert torch.get_num_threads() == 2 and clean == []  # so torch was left alone (not imported, were it absent)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["KMP_BLOCKTIME"] == "0"
    assert all(os.environ[k] == "1" for k in th.COUNT_ENV)
    assert set(policy.env_set) == {*th.WAIT_ENV, *th.COUNT_ENV}
    assert policy.passive and not policy.host and policy.threads == policy.small_threads == 1
    assert th.current_policy() is policy
    th.configure_process(1, load_torch=True)
    assert torch.get_num_threads() == 1 and clean == [1]


def test_configure_never_overwrites_the_users_values(clean, monkeypatch):
    monkeypatch.setattr(th, "_torch_loaded", lambda: False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv(th.THREADS_ENV, "2")
    torch.set_num_threads(1)
    policy = th.configure_process()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["OMP_NUM_THREADS"] == "7"
    assert "OMP_WAIT_POLICY" not in policy.env_set and "OMP_NUM_THREADS" not in policy.env_set
    assert policy.threads == 2 and policy.source == th.THREADS_ENV
    assert not policy.passive and policy.small_threads == 1  # the user asked for spinning: small stages go single
    assert torch.get_num_threads() == 2  # OMP_NUM_THREADS=7 would not give 2: set on torch itself


def test_configure_after_torch_was_imported_knows_the_policy_is_fixed(clean):
    policy = th.configure_process(2)  # torch is in sys.modules here, loaded without a passive policy
    assert policy.host and not policy.passive and policy.small_threads == 1 and policy.threads == 2


def test_child_env_gives_the_policy_and_keeps_user_values(clean, monkeypatch):
    env = th.child_env(1)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["MKL_NUM_THREADS"] == "1" and env[th.THREADS_ENV] == "1"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert th.child_env(1)["OMP_WAIT_POLICY"] == "ACTIVE"
    assert th.child_env(1, keep_user=False)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ or os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # nothing set here


# ------------------------------------------------------------------------------------------------ host
def test_host_policy_leaves_host_alone(clean, monkeypatch):
    torch.set_num_threads(2)
    policy = th.host_policy()
    assert policy.host and policy.threads == 2 and policy.source == "host"
    assert policy.small_threads == 1 and not policy.passive
    assert torch.get_num_threads() == 2 and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(th, "_start_environ", lambda: {"OMP_WAIT_POLICY": "passive"})
    assert th.host_policy().small_threads == 2  # a host started passive: small stages may use its threads
    monkeypatch.setenv(th.THREADS_ENV, "1")
    assert th.host_policy().threads == 1


def test_current_policy_without_configuration_is_the_host_one(clean):
    torch.set_num_threads(2)
    p = th.current_policy()
    assert p.host and p.small_threads == 1 and p.threads == 2
    assert th.current_policy() is not th.current_policy()  # worked out each time: a later configure wins


def test_start_environment_is_read_from_the_process():
    env = th._start_environ.__wrapped__()
    assert env.get("PATH") == os.environ.get("PATH") or sys.platform != "linux"


def test_torch_threads_restores_and_is_per_thread(clean):
    torch.set_num_threads(2)
    seen = {}
    ready, go = threading.Event(), threading.Event()

    def other():
        torch.get_num_threads()  # this thread has run torch: it owns its count from now on
        ready.set()
        go.wait(5)
        seen["other"] = torch.get_num_threads()

    t = threading.Thread(target=other)
    t.start()
    ready.wait(5)
    with th.torch_threads(1):
        assert torch.get_num_threads() == 1
        go.set()
        t.join(5)
    assert seen["other"] == 2 and torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with th.torch_threads(1):
            raise RuntimeError("stage failed")
    assert torch.get_num_threads() == 2


def test_small_stage_follows_the_policy(clean):
    torch.set_num_threads(2)
    th.host_policy()
    with th.small_stage():
        assert torch.get_num_threads() == 1
    with th.small_stage(torch.zeros(1)), th.small_stage(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    for other in ("cuda:0", torch.device("meta"), torch.zeros(1, device="meta")):
        with th.small_stage(other):
            assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


# ------------------------------------------------------------------------------ under a competing load
CHILD = r"""
import contextlib, statistics, sys, time
mode, model = sys.argv[1], sys.argv[2]
from facegraph.models import threads as th
if mode == "cli":
    th.configure_process(2)                 # as plugin/cli.py main does, before torch is imported
import numpy as np
import torch
if mode in ("host", "spin"):
    torch.set_num_threads(2)                # the host (ComfyUI) loaded torch with its defaults
if mode == "host":
    th.host_policy()                        # the pack's import-time call
stage = th.small_stage if mode in ("cli", "host") else contextlib.nullcontext
from facegraph.models.tflite_torch import TFLiteModule
mesh = TFLiteModule.from_file(model, "face_landmarks_detector.tflite")
x = torch.from_numpy(np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32))
def median(ctx, n, budget):
    ts, end = [], time.perf_counter() + budget
    while len(ts) < n and (len(ts) < 3 or time.perf_counter() < end):
        t0 = time.perf_counter()
        with ctx(), torch.inference_mode():
            mesh(x)                         # eager: the traced run_numpy path costs ~5-12 s of tracing here
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3
median(stage, 3, 0)                         # warm up
one = lambda: th.torch_threads(1)
print("quiet", median(one, 10, 1.0), median(stage, 10, 1.0), flush=True)
sys.stdin.readline()                        # the parent has started the load
loaded = {one: [], stage: []}
end = time.perf_counter() + 2.5
while len(loaded[stage]) < 10 and (len(loaded[stage]) < 3 or time.perf_counter() < end):
    for ctx in (stage, one):                # alternated, so drift in the others' load hits both alike
        loaded[ctx].append(median(ctx, 1, 0))
print("loaded", statistics.median(loaded[one]), statistics.median(loaded[stage]), flush=True)
"""


def quiet_and_loaded(mode: str, model: str, busy: int = 2) -> dict[str, float]:
    """Median ms per face of the mesh in a fresh process run in ``mode``: ``quiet_1`` / ``quiet`` before the
    load (on one thread / as ``mode`` runs it), ``loaded_1`` / ``loaded`` under it (alternated), the load being
    ``busy`` busy-looping processes started after the quiet measurements and stopped before returning."""
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, model], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    loops = []
    try:
        quiet_1, quiet = map(float, child.stdout.readline().split()[1:])
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        time.sleep(0.3)
        child.stdin.write("go\n")
        child.stdin.flush()
        loaded_1, loaded = map(float, child.stdout.readline().split()[1:])
        child.wait(30)
        return {"quiet_1": quiet_1, "quiet": quiet, "loaded_1": loaded_1, "loaded": loaded}
    finally:
        for p in loops:
            p.kill()
            p.wait()
        if child.poll() is None:
            child.kill()
            child.wait()


# Bounds. Beside 2 busy loops on 2 cores a well-behaved stage gets about 2/3 of a core (1.5x its quiet time),
# less where other work shares the machine (this one runs several engineers' jobs: 5x seen at load 10);
# spinning threads took 21-170x its quiet 1-thread time here (bench/threads.py). QUIET_BOUND separates the
# two with room for a busy machine. Against the 1-thread time under the same load (alternated, so the others'
# load hits both alike) the policy is within 1.4x and spinning 6x or more: LOADED_BOUND is the sharp check.
QUIET_BOUND = 12.0
LOADED_BOUND = 3.0


def _within(t: dict[str, float]) -> bool:
    return t["loaded"] <= QUIET_BOUND * t["quiet_1"] and t["loaded"] <= LOADED_BOUND * t["loaded_1"]


@pytest.mark.shared
@pytest.mark.parametrize("mode", [pytest.param("cli", marks=pytest.mark.slow), "host"])  # ~7 s each quiet, 20 at load 16
def test_mesh_stays_near_its_quiet_time_under_load(mirror, mode):
    t = quiet_and_loaded(mode, str(mirror / "mediapipe" / "face_landmarker.task"))
    assert _within(t), f"{mode}: ms per face {t}"


@pytest.mark.slow
@pytest.mark.shared
def test_without_the_policy_the_mesh_collapses(mirror):
    """The bounds mean something: the same process without the policy (2 spinning threads) breaks both."""
    t = quiet_and_loaded("spin", str(mirror / "mediapipe" / "face_landmarker.task"))
    assert t["loaded"] > QUIET_BOUND * t["quiet_1"] and t["loaded"] > LOADED_BOUND * t["loaded_1"], t


WAIT_CHILD = r"""
import os, sys, time
if sys.argv[1] == "before": os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import torch
if sys.argv[1] == "after": os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
torch.set_num_threads(2)
a = torch.randn(200_000)
c0 = time.process_time()
for _ in range(100):
    a + 1                                   # a parallel region (above torch's grain of 32768 elements)
    time.sleep(0.002)                       # idle: spinning workers burn CPU here, passive ones sleep
print((time.process_time() - c0) / 100 * 1e3)
"""


@pytest.mark.slow
def test_wait_policy_is_read_when_torch_is_imported():
    """OMP_WAIT_POLICY set after ``import torch`` (even before the first parallel region) changes nothing: the
    idle worker still spins (measured: ~9 ms CPU per region with a 2 ms pause, as with the variable unset);
    set before the import it sleeps (~0.2 ms). CPU time, unlike wall time, is little moved by other load."""
    if th.available_cores() < 2:
        pytest.skip("needs 2 cores for a worker thread to spin")
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    cpu_ms = {m: float(subprocess.run([sys.executable, "-c", WAIT_CHILD, m], env=env, capture_output=True,
                                      text=True, check=True, timeout=60).stdout) for m in ("before", "after")}
    assert cpu_ms["after"] > 5 * cpu_ms["before"], cpu_ms
