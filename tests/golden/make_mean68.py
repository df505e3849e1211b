"""Generate core.templates.MEAN68: a frontal 68-point mean shape for alignment, derived from MediaPipe's
canonical face mesh (Apache-2.0, in face_landmarker.task) through core.landmarks.MESH_TO_IBUG68, projected
orthographically (x right, y down) and placed by a similarity so that its five derived points fit the
arcface_112 template (normalised to the unit square). Prints the table to paste into core/templates.py.

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python tests/golden/make_mean68.py
"""
import zipfile

import numpy as np

from facegraph.core.geometry import estimate_similarity, transform_points
from facegraph.core.landmarks import five_from_ibug68, mesh_to_ibug68
from facegraph.core.templates import ARCFACE_112
from facegraph.models.landmarkers import read_canonical_mesh
from facegraph.models.store import default_store


def mean68() -> np.ndarray:
    path = default_store().resolve("mediapipe_landmarker_v2").path()
    with zipfile.ZipFile(path) as z:
        verts = read_canonical_mesh(z.read("geometry_pipeline_metadata_landmarks.binarypb"))[0]
    xy = verts[:, :2] * np.array([1.0, -1.0])  # model y up -> image y down
    p68 = mesh_to_ibug68(xy)
    fit = estimate_similarity(five_from_ibug68(p68), ARCFACE_112)
    return transform_points(fit.matrix, p68)


if __name__ == "__main__":
    pts = mean68()
    rows = ",\n    ".join(", ".join(f"({x:.5f}, {y:.5f})" for x, y in pts[i:i + 4]) for i in range(0, 68, 4))
    print(f"MEAN68 = np.array([\n    {rows},\n])")
