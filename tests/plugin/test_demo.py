from facegraph.core.io.images import read_image
from facegraph.plugin.cli import main


def test_demo_writes_an_exr_sequence_and_a_picture(tmp_path):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--frames", "6"]) == 0
    frames = sorted((out / "result").glob("*.exr"))
    assert len(frames) == 6
    px, info = read_image(frames[0])
    assert px.dtype.name == "float32" and info.pixel_type == "half"
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # a second run resumes: nothing is rewritten, nothing fails
    mtime = frames[0].stat().st_mtime_ns
    assert main(["-q", "demo", "--out", str(out), "--frames", "6"]) == 0
    assert frames[0].stat().st_mtime_ns == mtime
