"""Golden values for tests/models/test_analysis_chain.py: the default analysis chain (yunet_n ->
mediapipe_landmarker_v2 -> re-crop 1, eyes auto; and one case with iris patches on) as it was at commit
01574dc (numpy, full-resolution network view, one face at a time), on real frames built from ../shared/data.

Run it against that commit from a git worktree, importing the old tree under another package name:

    git worktree add /tmp/chain_base 01574dc5117b6c7e0f268285b27cd05e0a143816
    mkdir -p /tmp/chain_base_pkg && ln -sfn /tmp/chain_base /tmp/chain_base_pkg/facegraph_base
    PYTHONPATH=/tmp/chain_base_pkg FACEGRAPH_MODEL_MIRROR=../shared/models \\
        .venv/bin/python tests/golden/make_chain_golden.py --package facegraph_base

It writes tests/golden/chain_golden.npz. ``cases(data, read_image)`` builds the frames; the test imports it
from this file so both sides analyse the same pixels.
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "chain_golden.npz"
DATA = HERE.parents[2] / "shared" / "data"


def cases(data: Path, read_image) -> dict[str, dict]:
    """name -> {"frames": [(H, W, C) float32 linear premultiplied], "eyes": "auto" | "on"}.

    plate1080: s0.jpg at a quarter of its exposure in a black 1920 x 1080 plate (auto exposure must cope);
    group: a PASCAL photo with 7 faces (many faces in one frame); aflw: three 450 x 450 AFLW2000-3D images
    as one batch (two frontal, one profile); alpha: s0.jpg with a premultiplied alpha ramp (RGBA); iris: the
    plate with eye patches on."""
    s0, _ = read_image(data / "stills" / "s0.jpg")
    s0 = s0[..., :3]
    plate = np.zeros((1080, 1920, 3), np.float32)
    plate[200:200 + s0.shape[0], 700:700 + s0.shape[1]] = s0 * np.float32(0.25)
    group, _ = read_image(data / "boxes" / "2008_004176.jpg")
    aflw = [read_image(data / "aflw2000_dev" / n)[0][..., :3] for n in
            ("image00042.jpg", "image00052.jpg", "image00022.jpg")]
    h, w = s0.shape[:2]
    ramp = np.clip(np.linspace(0.3, 1.2, w, dtype=np.float32), 0, 1)[None, :].repeat(h, 0)
    rgba = np.concatenate([s0 * ramp[..., None], ramp[..., None]], -1).astype(np.float32)
    return {"plate1080": {"frames": [plate], "eyes": "auto"},
            "group": {"frames": [group[..., :3]], "eyes": "auto"},
            "aflw": {"frames": aflw, "eyes": "auto"},
            "alpha": {"frames": [rgba], "eyes": "auto"},
            "iris": {"frames": [plate], "eyes": "on"}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", default="facegraph", help="import name of the tree to measure")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    shot = importlib.import_module(f"{a.package}.models.shot")
    images = importlib.import_module(f"{a.package}.core.io.images")
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, list] = {}
    analysers: dict[str, object] = {}
    for name, case in cases(DATA, images.read_image).items():
        eyes = case["eyes"]
        if eyes not in analysers:
            analysers[eyes] = shot.ShotAnalyser(shot.AnalysisOptions(device="cpu", eyes=eyes))
        an = analysers[eyes]
        rows = []
        for i, px in enumerate(case["frames"]):
            ff = an.analyse_frame(px, i)
            for j, f in enumerate(ff.faces):
                key = f"{name}/{i}/{j}"
                arrays[key + "/box"] = np.asarray(f.box, np.float64)
                arrays[key + "/points"] = np.asarray(f.landmarks.points, np.float32)
                rows.append({"frame": i, "face": j, "score": float(f.score), "notes": list(f.notes),
                             "scheme": f.landmarks.scheme})
        meta[name] = rows
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(a.out, **arrays)
    print(f"wrote {a.out}: " + ", ".join(f"{k}: {len(v)} faces" for k, v in meta.items()))


if __name__ == "__main__":
    main()
