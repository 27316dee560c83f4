"""The unwrapper charts the mesh in compact pieces and packs them into one atlas without overlaps."""
import numpy as np
import pytest

from img2mesh.recon.mesh.meshing import extract_mesh
from img2mesh.recon.mesh.texture import compact_pieces, rasterize_uv, unwrap


@pytest.fixture(scope="module")
def sphere():
    return extract_mesh(lambda p: p.norm(dim=-1) - 0.4, -0.5, 0.5, 40, 0.0)  # ~6k faces


def test_pieces_partition_the_faces_into_compact_groups():
    rng = np.random.default_rng(0)
    centroids = rng.random((5000, 3)) * [4.0, 1.0, 1.0]
    pieces = compact_pieces(centroids, 700)
    ids = np.sort(np.concatenate(pieces))
    assert np.array_equal(ids, np.arange(5000)) and max(len(p) for p in pieces) <= 700
    widths = [np.ptp(centroids[p][:, 0]) for p in pieces]
    assert max(widths) < 1.0  # split along the long side first: no piece spans the box


@pytest.mark.parametrize("piece_faces", [0, 1000])
def test_atlas_covers_every_face_once_without_overlaps(sphere, piece_faces):
    out = unwrap(sphere, size=512, piece_faces=piece_faces)
    assert len(out.faces) == len(sphere.faces)
    # Every output triangle is one of the input's (vertices split at seams, positions kept).
    key = lambda m: {tuple(sorted(map(tuple, np.round(m.vertices[f], 6)))) for f in m.faces}  # noqa: E731
    assert key(out) == key(sphere)
    uv = out.visual.uv
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    # No two charts share texels: the texels rasterised (each once) match the summed triangle areas.
    tri = uv[out.faces] * 512
    areas = 0.5 * np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    rows, _, _, _ = rasterize_uv(uv, out.faces, 512)
    assert abs(len(rows) - areas.sum()) < 0.03 * areas.sum()
    assert areas.sum() > 0.3 * 512 * 512  # the atlas is used, not a corner of it
