"""comfy-test's static levels (syntax: forbidden patterns, cp1252-safe source, packaging files; javascript)
pass on the pack. Its other levels (install, registration, instantiation, validation) build a ComfyUI
environment from the network, which CI does not have: tests/plugin/test_comfy_contract.py covers registration
and instantiation with stand-ins shaped like ComfyUI's modules."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_comfy_test_lint_passes():
    pytest.importorskip("comfy_test", reason="comfy-test is in the test extra; install it with .[test]")
    proc = subprocess.run([sys.executable, "-m", "comfy_test", "lint", str(ROOT)], capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "[SYNTAX] PASSED" in out, out[-3000:]
