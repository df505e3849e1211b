"""Shared fixtures. Tests never download: FACEGRAPH_OFFLINE=1 and a per-session cache directory.

../shared (the model mirror and real data) is found relative to the project root; tests that need it use the
``shared`` / ``mirror`` / ``data`` fixtures, which skip with a clear reason where it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGRAPH_SHARED", ROOT.parent / "shared"))
MIRROR = Path(os.environ.get("FACEGRAPH_MODEL_MIRROR") or SHARED / "models")
DATA = SHARED / "data"


def pytest_configure(config):
    os.environ["FACEGRAPH_OFFLINE"] = "1"
    if MIRROR.is_dir():
        os.environ["FACEGRAPH_MODEL_MIRROR"] = str(MIRROR)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the user's cache out of tests (pins, downloads)."""
    cache = tmp_path_factory.mktemp("facegraph-cache")
    old = os.environ.get("FACEGRAPH_CACHE")
    os.environ["FACEGRAPH_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("FACEGRAPH_CACHE", None)
    else:
        os.environ["FACEGRAPH_CACHE"] = old


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (model mirror and real data live there; CI has it)")
    return SHARED


@pytest.fixture(scope="session")
def mirror(shared) -> Path:
    if not (MIRROR / "SHA256SUMS").is_file():
        pytest.skip(f"model mirror not found at {MIRROR}")
    return MIRROR


@pytest.fixture(scope="session")
def data(shared) -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def mirror_sums(mirror) -> dict[str, str]:
    """{relative path: sha256} from the mirror's SHA256SUMS."""
    out = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            sha, path = line.split(maxsplit=1)
            out[path.strip().removeprefix("./")] = sha
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked ``shared`` skip (with the reason) where ../shared is absent, whatever fixtures they use."""
    if SHARED.is_dir() and (MIRROR / "SHA256SUMS").is_file():
        return
    skip = pytest.mark.skip(reason=f"../shared (model mirror and real data) not found at {SHARED}; CI has it")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


# ---- devices (DESIGN.md "Frames on any device"): every frame kernel's tests take these fixtures ----
import torch  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=[pytest.param(d, marks=[pytest.mark.gpu] if d != "cpu" else []) for d in DEVICES])
def device(request) -> torch.device:
    """Each available device: cpu always, cuda where present (CUDA cases do not exist without a GPU)."""
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32])
def dtype(request) -> torch.dtype:
    """The frame dtypes a kernel accepts (float32; kernels that take half add their own)."""
    return request.param
