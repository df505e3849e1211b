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


# ---------------------------------------------------------------------------------------------------- reference
def _reference(v: torch.Tensor, faces: torch.Tensor, size) -> tuple[torch.Tensor, ...]:
    """The sampling rule of the module docstring, evaluated for every (triangle, pixel centre) pair of one mesh
    (B = 1) with the same float32 formulas and no boxes, windows, chunks or compaction: (tri_id, bary, depth)."""
    w, h = size
    p = v[0][faces]  # (F, 3, 3)
    x, y, z = (p[..., i].t()[..., None, None] for i in range(3))  # (3, F, 1, 1) per vertex
    px = (torch.arange(w, device=v.device, dtype=torch.float32) + 0.5).view(1, 1, w)
    py = (torch.arange(h, device=v.device, dtype=torch.float32) + 0.5).view(1, h, 1)
    dx1, dy1, dz1, dx2, dy2, dz2 = x[1] - x[0], y[1] - y[0], z[1] - z[0], x[2] - x[0], y[2] - y[0], z[2] - z[0]
    area = dx1 * dy2 - dy1 * dx2
    orient = torch.where(area > 0, 1.0, -1.0)
    inside = area != 0
    for e in range(3):
        xa, ya, xb, yb = x[(e + 1) % 3], y[(e + 1) % 3], x[(e + 2) % 3], y[(e + 2) % 3]
        ex, ey = orient * (xb - xa), orient * (yb - ya)
        swap = (xa > xb) | ((xa == xb) & (ya > yb))
        cx, cy = torch.where(swap, xb, xa), torch.where(swap, yb, ya)
        top_left = (ey < 0) | ((ey == 0) & (ex > 0))
        u, s = ex * (py - cy), ey * (px - cx)
        inside = inside & torch.where(top_left, u - s >= 0, u - torch.nextafter(s, torch.tensor(float("inf"))) >= 0)
    inv = 1.0 / torch.where(area != 0, area, torch.ones_like(area))
    gx, gy = (dz1 * dy2 - dz2 * dy1) * inv, (dz2 * dx1 - dz1 * dx2) * inv
    depth = (z[0] + gy * (py - y[0])) + gx * (px - x[0])  # (F, h, w)
    depth = torch.where(inside, depth, torch.tensor(float("inf")))
    best = depth.amin(0)
    first = torch.where(inside & (depth == best), torch.arange(len(faces)).view(-1, 1, 1), len(faces)).amin(0)
    hit = first < len(faces)
    tri_id = torch.where(hit, first, -1)
    f = first.clamp(max=len(faces) - 1)
    a1, b1, a2, b2 = ((c * inv)[f, 0, 0] for c in (dy2, -dx2, -dy1, dx1))
    ddx, ddy = px[0] - x[0][f, 0, 0], py[0] - y[0][f, 0, 0]
    l1, l2 = a1 * ddx + b1 * ddy, a2 * ddx + b2 * ddy
    bary = torch.where(hit[..., None], torch.stack([1.0 - l1 - l2, l1, l2], -1), 0.0)
    return tri_id, bary, torch.where(hit, best, float("inf"))


def _dense_mesh(n: int, step: float, origin: float, seed: int, jitter: float = 0.3):
    """An n x n grid of squares (random diagonals and windings) with jittered vertices and random depths: at step
    ~1 px most triangles cover 0-2 pixel centres; plus three large triangles (tiled) crossing it."""
    rng = np.random.default_rng(seed)
    verts, faces = _grid_mesh(n, step, origin, rng)
    verts = verts + rng.uniform(-jitter, jitter, verts.shape) * step
    z = rng.uniform(1.0, 3.0, (len(verts), 1))
    big = np.array([[-30, 5, 2.5], [140, 20, 0.5], [40, 150, 2.0],  # over TILE: tiles
                    [2, 2, 4.0], [70, 3, 0.2], [5, 66, 0.2], [10, 10, 1.5], [11, 10, 1.5], [10, 11, 1.5]])
    verts = np.concatenate([np.concatenate([verts, z], 1), big])
    k = len(verts) - len(big)
    faces = np.concatenate([faces, [[k, k + 1, k + 2], [k + 3, k + 5, k + 4], [k + 6, k + 7, k + 8]]])
    return torch.tensor(verts, dtype=torch.float32)[None], torch.as_tensor(faces)


@pytest.mark.parametrize("step,seed", [(0.7, 0), (1.3, 1), (2.9, 2), (0.45, 3)])
def test_matches_per_pixel_reference(monkeypatch, step, seed):
    """Dense meshes of tiny triangles (most boxes 1-3 px: the exact-size groups and merged windows) plus tiled
    big ones: ids, barycentrics and depth are bit-identical to the per-pixel reference, on both CPU paths."""
    from facegraph.core.render import raster as module

    v, faces = _dense_mesh(int(14 / step), step, 1.3, seed)
    size = (72, 40)  # wider than TILE: the big triangles are tiled
    tri_id, bary, depth = _reference(v, faces, size)
    assert (tri_id >= 0).float().mean() > 0.3 and (tri_id == len(faces) - 3).any()
    for numpy_path in (True, False):
        monkeypatch.setattr(module, "USE_NUMPY_NONZERO", numpy_path)
        r = rasterise(v, faces, size)
        assert torch.equal(r.tri_id[0], tri_id), numpy_path
        assert torch.equal(r.depth[0], depth), numpy_path
        assert torch.equal(r.bary[0], bary), numpy_path
        assert torch.equal(r.mask[0, 0], (tri_id >= 0).float()), numpy_path


def test_chunking_does_not_change_the_raster(monkeypatch):
    """Chunk sizes and the merge threshold only regroup the same candidates: identical rasters (B = 2)."""
    from facegraph.core.render import raster as module

    v, faces = _dense_mesh(40, 1.1, 2.0, 4)
    v = torch.cat([v, v * torch.tensor([1.0, 1.0, -1.0]) + torch.tensor([7.5, -3.25, 9.0])])
    want = rasterise(v, faces, (70, 64), samples=4)
    for chunk, cost in ((64, 0), (1 << 20, 10 ** 9), (5000, 300)):
        monkeypatch.setattr(module, "NUMPY_CHUNK", chunk)
        monkeypatch.setattr(module, "_CHUNK_COST", cost)
        got = rasterise(v, faces, (70, 64), samples=4)
        for name in ("tri_id", "bary", "depth", "mask"):
            assert torch.equal(getattr(got, name), getattr(want, name)), (chunk, cost, name)


@pytest.mark.parametrize("step,origin", [(0.5, 0.5), (1.0, 0.0), (1.5, 0.5)])
def test_tiny_triangles_share_edges_exactly_once(device, step, origin):
    """Sub-pixel and pixel-sized triangles with vertices on the half-pixel lattice (edges through many centres):
    each centre inside the mesh is covered exactly once, triangle by triangle and by the whole mesh at once."""
    n = int(9 / step)
    verts, faces = _grid_mesh(n, step, origin + 0.5, np.random.default_rng(7))
    size = (int(n * step + origin) + 2,) * 2
    v = _mesh(np.concatenate([verts, np.ones((len(verts), 1))], 1), device)
    count = _one_by_one(v, faces, size)
    lo, hi = origin + 0.5, origin + 0.5 + n * step
    c = torch.arange(size[0], device=device) + 0.5
    strictly = (c > lo) & (c < hi)
    assert torch.all(count[strictly[:, None] & strictly[None, :]] == 1)
    assert count.max() <= 1
    whole = rasterise(v, torch.as_tensor(faces, device=device), size)
    assert torch.equal(whole.mask[0, 0], count)


def test_next_up_where_is_nextafter():
    """The int32 tie-rule step equals nextafter(v, +inf) (or v) for the values where the bit trick could slip:
    signed zeros, subnormals, sign changes, the largest finite float."""
    from facegraph.core.render import raster as module

    tiny = float(np.nextafter(np.float32(0), np.float32(1)))
    big = float(np.finfo(np.float32).max)
    vals = torch.tensor([0.0, -0.0, tiny, -tiny, 2 * tiny, 1e-38, -1e-38, 1.0, -1.0, -3.5, 1e30, big, -big])
    up = torch.nextafter(vals, torch.tensor(float("inf")))
    for use_numpy in (True, False):
        module.USE_NUMPY_NONZERO = use_numpy
        try:
            ops = module._Ops(torch.device("cpu"))
            for flag, want in ((1, up), (0, vals)):
                arr = ops.array(vals.clone())
                got = ops.tensor(module._next_up_where(arr, ops.cast(ops.array(torch.full((13,), flag)), ops.i32),
                                                       ops))
                assert torch.equal(got, want), (use_numpy, flag)  # -0 == +0
                assert torch.equal(ops.tensor(arr), vals)  # the input is untouched
        finally:
            module.USE_NUMPY_NONZERO = True


@pytest.mark.parametrize("k", [2, 3])
def test_antialiased_coverage_is_the_box_average_of_the_fine_raster(device, k):
    """samples = k^2 equals avg_pool2d of the centre-sampled raster at k times the resolution (k = 3: the same
    rounding of count / 9)."""
    v, faces = _dense_mesh(20, 1.7, 1.0, 5)
    v, faces = v.to(device), faces.to(device)
    soft = rasterise(v, faces, (40, 36), samples=k * k)
    fine = rasterise(v * torch.tensor([k, k, 1.0], device=device), faces, (40 * k, 36 * k))
    assert torch.equal(soft.mask, torch.nn.functional.avg_pool2d(fine.mask, k))
    assert ((soft.mask > 0) & (soft.mask < 1)).any()


def test_mesh_wholly_outside_or_culled(device):
    v = _mesh([[-9, -9, 1.0], [-2, -9, 1.0], [-9, -2, 1.0], [2, 2, 1.0], [12, 2, 1.0], [2, 12, 1.0]], device)
    faces = torch.tensor([[0, 2, 1], [3, 4, 5]], device=device)  # the second runs clockwise: culled
    r = rasterise(v, faces, (16, 16), cull_backfaces=True, samples=4)
    assert (r.tri_id == -1).all() and torch.isinf(r.depth).all()
    assert r.mask.sum() == 0 and r.bary.abs().sum() == 0


def test_interpolate_numpy_and_torch_paths_agree(monkeypatch):
    from facegraph.core.render import raster as module

    v, faces = _dense_mesh(24, 1.4, 1.0, 6)
    v = torch.cat([v, v + torch.tensor([2.5, 1.0, 0.5])])  # B = 2
    r = rasterise(v, faces, (72, 40))
    attrs = (v[0, :, :2].contiguous(), v, v[:1], torch.randn(v.shape[1], 5))
    want = [interpolate(r, a, faces) for a in attrs]
    monkeypatch.setattr(module, "USE_NUMPY_NONZERO", False)
    for a, w_ in zip(attrs, want):
        got = interpolate(r, a, faces)
        assert got.shape == (2, a.shape[-1], 40, 72) and torch.equal(got, w_)
    assert torch.equal(want[1][0], want[2][0]) and not torch.equal(want[1][1], want[2][1])


def test_cpu_path_runs_on_the_calling_thread():
    """On CPU no op is split over torch's OpenMP threads (which stall on a busy machine, see the module docstring):
    the other threads of the process use (almost) no CPU time while rasterise / interpolate run, at torch sizes far
    over ATen's 32768-element grain."""
    import time

    if torch.get_num_threads() < 2:
        pytest.skip("one torch thread: nothing to split")
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(8)
    pts = rng.uniform(0, 400, size=(20000, 2))
    faces = torch.as_tensor(Delaunay(pts).simplices)  # ~40k int32 triangles, 120k indices
    v = torch.tensor(np.concatenate([pts, rng.uniform(1, 9, size=(len(pts), 1))], 1), dtype=torch.float32)[None]
    rasterise(v, faces[:10], (8, 8))
    p0, t0 = time.process_time(), time.thread_time()
    for _ in range(3):
        r = rasterise(v, faces, (400, 400), samples=4)
        interpolate(r, v[0], faces)
    other, own = (time.process_time() - p0) - (time.thread_time() - t0), time.thread_time() - t0
    assert other < 0.1 * own + 0.005, (other, own)


def test_inputs_requiring_grad_keep_the_graph(device):
    """With an input that requires grad the torch path runs (numpy would cut the graph): same raster, and
    barycentrics / interpolated attributes are differentiable in the vertices."""
    v = _mesh([[1.0, 1.0, 1.0], [9.0, 1.5, 2.0], [1.5, 9.0, 3.0]], device)
    faces = torch.tensor([[0, 1, 2]], device=device)
    plain = rasterise(v, faces, (10, 10))
    vg = v.clone().requires_grad_()
    r = rasterise(vg, faces, (10, 10))
    assert torch.equal(r.tri_id, plain.tri_id) and torch.equal(r.bary.detach(), plain.bary)
    interpolate(r, vg[0], faces).sum().backward()
    assert vg.grad is not None and torch.isfinite(vg.grad).all()
