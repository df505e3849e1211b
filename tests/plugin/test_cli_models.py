import shutil

import pytest

from facegraph.plugin.cli import main


@pytest.mark.shared
def test_models_verify_accepts_the_mirror(mirror, capsys, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODEL_MIRROR", str(mirror))
    code = main(["-q", "models", "verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 mismatched" in out and "MISMATCH" not in out


@pytest.mark.shared
def test_models_verify_rejects_a_tampered_copy(mirror, tmp_path, capsys, monkeypatch):
    copy = tmp_path / "mirror"
    shutil.copytree(mirror / "yunet", copy / "yunet")
    target = copy / "yunet" / "yunet_n_dynamic.onnx"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setenv("FACEGRAPH_MODEL_MIRROR", str(copy))
    from facegraph.models import store as store_mod
    monkeypatch.setattr(store_mod, "_default_store", None)
    assert main(["-q", "models", "verify", "yunet_n", "yunet_s"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH yunet_n" in out
    assert "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12" in out  # the registered hash
    assert "ok       yunet_s" in out


@pytest.mark.shared
def test_models_list_shows_licence_flags(mirror, capsys):
    assert main(["-q", "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "[NON-COMMERCIAL]" in out and "[GPL]" in out
    assert "yunet_n*" in out
    assert "missing" in out  # FaceFusion's files are registered but not mirrored


def test_models_fetch_offline_fails_cleanly(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODEL_MIRROR", str(tmp_path / "empty"))
    from facegraph.models import store as store_mod
    monkeypatch.setattr(store_mod, "_default_store", None)
    assert main(["-q", "models", "fetch", "yunet_n"]) == 1
    assert "forbids download" in capsys.readouterr().err
