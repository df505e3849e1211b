"""The torch rasteriser against analytic triangles: coverage, tie rule, barycentrics, depth order, clipping,
degenerate and empty input, bad shapes; plus the BFM mesh from the model mirror."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.core.render.raster import interpolate, rasterise, vertex_normals


def _inside_bruteforce(tri: np.ndarray, w: int, h: int, margin: float = 1e-4):
    """(h, w) bool of pixel centres strictly inside triangle (3, 2) in float64, and (h, w) bool of centres
    within ``margin`` (in edge-function units normalised by edge length) of an edge, where ties may go either way."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    e = []
    for a, b in ((1, 2), (2, 0), (0, 1)):
        d = tri[b] - tri[a]
        e.append((d[0] * (ys - tri[a, 1]) - d[1] * (xs - tri[a, 0])) / max(np.hypot(*d), 1e-12))
    e = np.stack(e)
    area = (tri[1, 0] - tri[0, 0]) * (tri[2, 1] - tri[0, 1]) - (tri[1, 1] - tri[0, 1]) * (tri[2, 0] - tri[0, 0])
    e = e * np.sign(area)
    return (e > margin).all(0), (np.abs(e) <= margin).any(0)


def _one_by_one(v: torch.Tensor, faces, size) -> torch.Tensor:
    """(H, W) how many triangles cover each pixel centre, each triangle rasterised alone (one per batch item)."""
    per = v[0][torch.as_tensor(np.asarray(faces), device=v.device)]  # (F, 3, 3): one triangle per batch item
    r = rasterise(per, torch.tensor([[0, 1, 2]], device=v.device), size)
    return r.mask[:, 0].sum(0)


def _mesh(vertices, device, batch=True):
    v = torch.as_tensor(np.asarray(vertices, np.float32), device=device)
    return v[None] if batch else v


def test_coverage_matches_point_in_triangle(device):
    rng = np.random.default_rng(0)
    w, h = 37, 29
    tris = rng.uniform([-5, -5], [w + 5, h + 5], size=(24, 3, 2))
    verts = np.concatenate([tris, rng.uniform(1, 5, size=(24, 3, 1))], 2)  # one triangle per batch item
    r = rasterise(_mesh(verts, device, batch=False), torch.tensor([[0, 1, 2]], device=device), (w, h))
    assert r.tri_id.shape == (24, h, w) and r.bary.shape == (24, h, w, 3) and r.mask.shape == (24, 1, h, w)
    assert r.tri_id.dtype == torch.int64 and r.bary.dtype == r.depth.dtype == r.mask.dtype == torch.float32
    for i in range(24):
        inside, edge = _inside_bruteforce(tris[i], w, h)
        got = (r.tri_id[i] == 0).cpu().numpy()
        np.testing.assert_array_equal(got[~edge], inside[~edge])
        np.testing.assert_array_equal(r.mask[i, 0].cpu().numpy(), got.astype(np.float32))


def _grid_mesh(n: int, step: float, origin: float, rng=None):
    """An n x n grid of squares, each split along a random diagonal, random winding per triangle."""
    ij = np.stack(np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="xy"), -1).reshape(-1, 2)
    verts = ij * step + origin
    faces = []
    rng = rng or np.random.default_rng(1)
    for j in range(n):
        for i in range(n):
            a, b, c, d = j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i, (j + 1) * (n + 1) + i + 1
            pair = [(a, b, d), (a, d, c)] if rng.random() < 0.5 else [(a, b, c), (b, d, c)]
            for f in pair:
                faces.append(f if rng.random() < 0.5 else f[::-1])
    return verts, np.array(faces)


@pytest.mark.parametrize("step,origin", [(2.0, 0.5), (3.0, 1.5), (1.0, 0.5), (2.5, 0.25)])
def test_shared_edges_covered_exactly_once(device, step, origin):
    """Vertices on pixel centres, axis-aligned and diagonal edges through centres: each centre inside the mesh is
    covered by exactly one triangle (rasterising the triangles one by one and summing)."""
    n = 6
    verts, faces = _grid_mesh(n, step, origin)
    size = (int(n * step + 2 * origin) + 2,) * 2
    v = _mesh(np.concatenate([verts, np.ones((len(verts), 1))], 1), device)
    count = _one_by_one(v, faces, size)
    lo, hi = origin, origin + n * step
    c = torch.arange(size[0], device=device) + 0.5
    strictly = ((c > lo) & (c < hi))
    inner = strictly[:, None] & strictly[None, :]
    assert torch.all(count[inner] == 1)
    assert count.max() <= 1
    # and the whole mesh at once has the same coverage
    whole = rasterise(v, torch.as_tensor(faces, device=device), size).mask[0, 0]
    assert torch.equal(whole, count)


def test_shared_edges_delaunay_on_half_pixels(device):
    """An irregular mesh whose vertices sit on the half-pixel lattice, so many centres fall on edges."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(2)
    pts = np.unique(np.round(rng.uniform(0, 40, size=(60, 2)) * 2) / 2, axis=0)
    pts = np.concatenate([pts, [[0, 0], [40, 0], [0, 40], [40, 40]]])
    faces = Delaunay(pts).simplices
    v = _mesh(np.concatenate([pts, np.zeros((len(pts), 1))], 1), device)
    count = _one_by_one(v, faces, (40, 40))
    assert torch.all(count == 1)  # the hull is the whole image: every centre exactly once


def test_barycentrics_reproduce_pixel_centres(device):
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 64, size=(40, 2))
    from scipy.spatial import Delaunay

    faces = torch.as_tensor(Delaunay(pts).simplices, device=device)
    z = rng.uniform(1, 2, size=(40, 1))
    v = _mesh(np.concatenate([pts, z], 1), device)
    r = rasterise(v, faces, (64, 64))
    xy = interpolate(r, v[0, :, :2], faces)[0]
    cov = r.tri_id[0] >= 0
    ys, xs = torch.meshgrid(torch.arange(64, device=device) + 0.5, torch.arange(64, device=device) + 0.5,
                            indexing="ij")
    assert torch.allclose(xy[0][cov], xs[cov], atol=2e-4) and torch.allclose(xy[1][cov], ys[cov], atol=2e-4)
    assert torch.allclose(r.bary[0][cov].sum(-1), torch.ones((), device=device), atol=1e-5)
    assert r.bary[0][cov].min() >= -1e-5 and r.bary[0][~cov].abs().max() == 0
    # depth equals the interpolated z
    zi = interpolate(r, v[0, :, 2:], faces)[0, 0]
    assert torch.allclose(zi[cov], r.depth[0][cov], atol=1e-5)
    assert torch.isinf(r.depth[0][~cov]).all()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_nearer_triangle_wins_regardless_of_order(device, order):
    near = [[2, 2, 1.0], [30, 4, 1.0], [4, 30, 1.0]]
    far = [[1, 1, 5.0], [31, 1, 5.0], [16, 31, 3.0]]
    v = _mesh(near + far, device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)[list(order)]
    r = rasterise(v, faces, (32, 32))
    near_id = order.index(0)
    inside_near, edge = _inside_bruteforce(np.array(near)[:, :2], 32, 32)
    tid = r.tri_id[0].cpu().numpy()
    assert np.all(tid[inside_near & ~edge] == near_id)
    assert np.all(r.depth[0].cpu().numpy()[inside_near & ~edge] == 1.0)
    assert (tid == 1 - near_id).sum() > 50  # the far one shows around the near one


def test_equal_depth_tie_goes_to_lower_index(device):
    v = _mesh([[1, 1, 2], [15, 1, 2], [1, 15, 2]], device)
    r = rasterise(v, torch.tensor([[0, 1, 2], [0, 2, 1]], device=device), (16, 16))
    assert set(torch.unique(r.tri_id).tolist()) == {-1, 0}


def test_partly_and_wholly_outside(device):
    w, h = 40, 30
    tris = np.array([[[-100, -50], [1e4, 10], [20, 500]],  # huge, covers the image partly
                     [[-20, 5], [10, -30], [35, 25]],  # crosses the top-left corner
                     [[50, 5], [80, 5], [60, 25]],  # wholly right of the image
                     [[-5, -5], [-1, -9], [-3, -1]]])  # wholly above-left
    verts = np.concatenate([tris, np.ones((4, 3, 1))], 2)
    r = rasterise(_mesh(verts, device, batch=False), torch.tensor([[0, 1, 2]], device=device), (w, h))
    for i in range(4):
        inside, edge = _inside_bruteforce(tris[i].astype(np.float64), w, h)
        got = (r.tri_id[i] == 0).cpu().numpy()
        np.testing.assert_array_equal(got[~edge], inside[~edge])
    assert r.mask[2:].sum() == 0


def test_big_triangles_are_tiled_exactly(device):
    """Boxes over the last size class go through tiles; coverage still matches the brute force."""
    tri = np.array([[3.3, 2.1], [297.7, 40.2], [120.4, 251.9]])
    verts = np.concatenate([tri, np.ones((3, 1))], 1)
    r = rasterise(_mesh(verts, device), torch.tensor([[0, 1, 2]], device=device), (300, 260))
    inside, edge = _inside_bruteforce(tri, 300, 260)
    got = (r.tri_id[0] == 0).cpu().numpy()
    np.testing.assert_array_equal(got[~edge], inside[~edge])


def test_degenerate_and_non_finite_triangles_are_ignored(device):
    v = _mesh([[1, 1, 1], [10, 10, 1], [19, 19, 1], [2, 18, 1], [float("nan"), 3, 1], [3, 3, 1]], device)
    faces = torch.tensor([[0, 1, 2], [0, 0, 3], [3, 4, 5], [0, 1, 3]], device=device)
    r = rasterise(v, faces, (20, 20))
    assert set(torch.unique(r.tri_id).tolist()) == {-1, 3}


def test_empty_mesh(device):
    v = torch.zeros(2, 0, 3, device=device)
    r = rasterise(v, torch.zeros(0, 3, dtype=torch.int64, device=device), (7, 5))
    assert r.tri_id.shape == (2, 5, 7) and (r.tri_id == -1).all() and torch.isinf(r.depth).all()
    assert r.mask.sum() == 0 and r.bary.abs().sum() == 0
    out = interpolate(r, torch.zeros(0, 2, device=device), torch.zeros(0, 3, dtype=torch.int64, device=device))
    assert out.shape == (2, 2, 5, 7)


def test_cull_backfaces(device):
    ccw = [[2, 2, 1], [2, 12, 1], [12, 2, 1]]  # counter-clockwise on a y-down screen: front
    cw = [[20, 2, 1], [30, 2, 1], [20, 12, 1]]
    v = _mesh(ccw + cw, device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    assert set(torch.unique(rasterise(v, faces, (32, 16)).tri_id).tolist()) == {-1, 0, 1}
    assert set(torch.unique(rasterise(v, faces, (32, 16), cull_backfaces=True).tri_id).tolist()) == {-1, 0}
    n = vertex_normals(v, faces)[0]
    assert torch.allclose(n[:3], torch.tensor([0.0, 0.0, -1.0], device=device))  # front: towards the camera
    assert torch.allclose(n[3:], torch.tensor([0.0, 0.0, 1.0], device=device))


def test_antialiased_coverage(device):
    v = _mesh([[0.0, 0.0, 1.0], [16.1, 0.0, 1.0], [0.0, 16.1, 1.0]], device)
    faces = torch.tensor([[0, 1, 2]], device=device)
    hard = rasterise(v, faces, (16, 16))
    soft = rasterise(v, faces, (16, 16), samples=16)
    assert torch.equal(soft.tri_id, hard.tri_id)
    m = soft.mask[0, 0]
    assert m.min() >= 0 and m.max() <= 1
    assert ((m > 0) & (m < 1)).sum() >= 14  # the diagonal edge is fractional
    assert abs(float(m.sum()) - 16.1 ** 2 / 2) < 1.0  # area of the triangle
    assert m[2, 2] == 1 and m[15, 15] == 0


def test_interpolate_batched_attributes_and_normals(device):
    verts = torch.tensor([[[1, 1, 1], [9, 1, 1], [1, 9, 1]], [[1, 1, 2], [9, 1, 2], [1, 9, 2]]],
                         dtype=torch.float32, device=device)
    faces = torch.tensor([[0, 1, 2]], device=device)
    r = rasterise(verts, faces, (10, 10))
    attr = torch.arange(12, dtype=torch.float32, device=device).view(2, 3, 2)
    out = interpolate(r, attr, faces)
    assert out.shape == (2, 2, 10, 10)
    cov = r.tri_id[1] >= 0
    assert torch.allclose(out[1, 0][cov] - out[0, 0][cov], torch.tensor(6.0, device=device))
    with pytest.raises(InputError):
        interpolate(r, attr.double(), faces)


def test_sphere_vertex_normals_are_radial(device):
    u, vv = np.meshgrid(np.linspace(0.1, np.pi - 0.1, 20), np.linspace(0, 2 * np.pi, 40, endpoint=False))
    p = np.stack([np.sin(u) * np.cos(vv), np.sin(u) * np.sin(vv), np.cos(u)], -1).reshape(-1, 3)
    from scipy.spatial import ConvexHull

    hull = ConvexHull(p)
    faces = hull.simplices.copy()
    centre_side = np.einsum("fk,fk->f", np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]]),
                            p[faces[:, 0]])
    faces[centre_side < 0] = faces[centre_side < 0][:, ::-1]  # wind outwards
    n = vertex_normals(_mesh(p, device), torch.as_tensor(faces, device=device))[0].cpu().numpy()
    assert np.min(np.einsum("vk,vk->v", n, p)) > 0.98


@pytest.mark.parametrize("call", [
    lambda d: rasterise(torch.zeros(5, 3, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, dtype=torch.float64, device=d),
                        torch.zeros(1, 3, dtype=torch.int64, device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 2, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.zeros(1, 2, dtype=torch.int64, device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.tensor([[0, 1, 5]], device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.tensor([[0, 1, -1]], device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.zeros(1, 3, device=d), (4, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d), (0, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d), (4.5, 4)),
    lambda d: rasterise(torch.zeros(1, 5, 3, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d), (4, 4),
                        samples=3),
    lambda d: vertex_normals(torch.zeros(5, 3, device=d), torch.zeros(1, 3, dtype=torch.int64, device=d)),
])
def test_bad_input_raises_input_error(device, call):
    with pytest.raises(InputError):
        call(device)


def test_inputs_not_modified(device):
    v = _mesh([[0.0, 0.0, 1.0], [16.0, 0.0, 1.0], [0.0, 16.0, 1.0]], device)
    before = v.clone()
    rasterise(v, torch.tensor([[0, 1, 2]], device=device), (16, 16), samples=4)
    assert torch.equal(v, before)


# ---------------------------------------------------------------------------------------------------- real mesh
def load_bfm_mesh(mirror, size: int, fill: float = 0.9):
    """3DDFA_V2's BFM mean shape (38365 vertices, 76073 triangles) as a frontal screen-space mesh filling
    ``fill`` of a size x size image; triangles rewound counter-clockwise (3DDFA's run clockwise on our y-down
    screen, i.e. their normals point into the head). Returns (vertices (1, V, 3) float32, triangles (F, 3))."""
    from facegraph.models.safe_pickle import load_arrays

    tri = np.ascontiguousarray(load_arrays(mirror / "3ddfa_v2" / "tri.pkl").T[:, [0, 2, 1]]).astype(np.int64)
    keep = np.load(mirror / "3ddfa_v2" / "indices.npy")
    # flat x, y, z per vertex (the order core/morphable/tddfa.reconstruct reads with reshape(3, -1, order="F"))
    mean = np.load(mirror / "bfm" / "u_shp.npy").reshape(-1, 3)[keep].astype(np.float64)
    p = mean * [1.0, -1.0, -1.0]  # model frame (y up, z to the viewer) -> screen (y down, z away): a rotation
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    s = fill * size / (hi - lo).max()
    v = np.empty_like(p)
    v[:, :2] = (p[:, :2] - (lo + hi) / 2) * s + size / 2
    v[:, 2] = (p[:, 2] - p[:, 2].min()) * s + 1.0
    return torch.from_numpy(v.astype(np.float32))[None], torch.from_numpy(tri)


@pytest.mark.shared
def test_bfm_mesh_silhouette(mirror):
    from scipy import ndimage

    v, tri = load_bfm_mesh(mirror, 512)
    assert v.shape == (1, 38365, 3) and tri.shape == (76073, 3)
    r = rasterise(v, tri, (512, 512))
    m = r.mask[0, 0].numpy() > 0
    assert 0.35 < m.mean() < 0.75, m.mean()
    filled = ndimage.binary_fill_holes(m)
    # the only holes are the mesh's own (the lips' slit): a few pixels at 512
    assert filled.sum() - m.sum() <= 1e-4 * m.sum()
    labels, count = ndimage.label(m)
    assert count == 1
    # front faces after rewinding: all visible triangles face the camera
    front = rasterise(v, tri, (512, 512), cull_backfaces=True)
    assert (front.tri_id == r.tri_id).float().mean() > 0.999


def test_numpy_and_torch_nonzero_paths_agree(monkeypatch):
    """CPU tensors take numpy's nonzero (faster here); the torch path (what CUDA runs) gives the same raster."""
    from scipy.spatial import Delaunay

    from facegraph.core.render import raster as module

    rng = np.random.default_rng(5)
    pts = rng.uniform(-10, 110, size=(300, 2))
    faces = torch.as_tensor(Delaunay(pts).simplices)
    v = torch.tensor(np.concatenate([pts, rng.uniform(1, 9, size=(300, 1))], 1), dtype=torch.float32)[None]
    v = torch.cat([v, v * torch.tensor([1.0, 1.0, -1.0]) + torch.tensor([3.0, 2.0, 20.0])])  # B = 2
    a = rasterise(v, faces, (100, 90), samples=4)
    monkeypatch.setattr(module, "USE_NUMPY_NONZERO", False)
    b = rasterise(v, faces, (100, 90), samples=4)
    for name in ("tri_id", "bary", "depth", "mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_huge_triangles_are_chunked(device, monkeypatch):
    """Buckets are cut into chunks of bounded size; the result does not depend on the chunking."""
    from facegraph.core.render import raster as module

    v = _mesh([[-50.0, -40.0, 2.0], [700.0, 10.0, 2.0], [30.0, 650.0, 2.0], [5, 5, 1], [60, 9, 1], [9, 70, 1]],
              device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    a = rasterise(v, faces, (600, 500))
    monkeypatch.setattr(module, "_MAX_CANDIDATES", 5000)
    b = rasterise(v, faces, (600, 500))
    assert torch.equal(a.tri_id, b.tri_id) and torch.equal(a.depth, b.depth)
    inside, edge = _inside_bruteforce(np.array([[-50.0, -40.0], [700.0, 10.0], [30.0, 650.0]]), 600, 500)
    got = (a.tri_id[0] >= 0).cpu().numpy()
    np.testing.assert_array_equal(got[~edge], inside[~edge])
