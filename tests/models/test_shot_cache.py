"""The per-shot analysis cache: reused across runs, invalidated by a changed frame or setting."""
import os

import numpy as np
import pytest

from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.source import open_source
from facegraph.models.shot import AnalysisOptions, ShotAnalyser

pytestmark = pytest.mark.shared


@pytest.fixture
def plate(tmp_path, data):
    px, _ = read_image(data / "stills" / "s0.jpg")
    for f in range(1, 5):
        write_image(tmp_path / "p" / f"p.{f:04d}.exr", np.roll(px[..., :3], 2 * f, axis=1), pixel_type="half")
    return str(tmp_path / "p" / "p.####.exr")


def test_cache_is_reused_then_invalidated(plate, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    an = ShotAnalyser(AnalysisOptions(device="cpu", detect_every=1))
    calls = []
    real = ShotAnalyser.analyse_frames

    def counting(self, frames, numbers):  # the frames the models run on (analyse() batches them)
        calls.extend(numbers)
        return real(self, frames, numbers)

    monkeypatch.setattr(ShotAnalyser, "analyse_frames", counting)
    first = an.analyse(open_source(plate), cache)
    assert calls == [1, 2, 3, 4] and all(len(ff) == 1 for ff in first)
    calls.clear()
    again = an.analyse(open_source(plate), cache)
    assert calls == [] and again == first  # deterministic: the same records come back
    # a changed frame recomputes that frame only
    p3 = plate.replace("####", "0003")
    px, _ = read_image(p3)
    os.unlink(p3)
    write_image(p3, px * 0.5)
    calls.clear()
    an.analyse(open_source(plate), cache)
    assert calls == [3]
    # a changed setting is another cache
    calls.clear()
    ShotAnalyser(AnalysisOptions(device="cpu", recrop=0, detect_every=1)).analyse(open_source(plate), cache)
    assert calls == [1, 2, 3, 4]
    # a sub-range shares the entries
    calls.clear()
    an.analyse(open_source(plate, [2, 3]), cache)
    assert calls == []
