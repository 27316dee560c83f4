"""Textured assets: UV rasterisation and baking, decimation, placement, the files read back, and a texture that
carries the colour detail decimation takes from vertex colours."""
import json
import math

import numpy as np
import pytest
import torch
import trimesh

from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.errors import InputError
from img2mesh.data.views import on_white
from img2mesh.recon.mesh.asset import make_asset, write_asset
from img2mesh.recon.mesh.io import load_mesh
from img2mesh.recon.mesh.meshing import color_vertices, extract_mesh
from img2mesh.recon.mesh.raycast import render_mesh
from img2mesh.recon.mesh.texture import bake_texture, fill_empty, rasterize_uv

RADIUS = 0.4
RED, BLUE = torch.tensor([0.9, 0.15, 0.1]), torch.tensor([0.1, 0.2, 0.9])


def checker(p: torch.Tensor) -> torch.Tensor:
    """A 12 x 6 checkerboard in azimuth x polar angle: far finer than a few hundred vertices can hold."""
    azimuth = torch.atan2(p[:, 1], p[:, 0])
    polar = torch.acos((p[:, 2] / p.norm(dim=-1).clamp_min(1e-9)).clamp(-1, 1))
    cell = torch.floor(azimuth / (2 * math.pi) * 12) + torch.floor(polar / math.pi * 6)
    odd = (cell.remainder(2) > 0.5)[:, None]
    return torch.where(odd, RED, BLUE)


@pytest.fixture(scope="module")
def sphere():
    return extract_mesh(lambda p: p.norm(dim=-1) - RADIUS, -0.5, 0.5, 48, 0.0)  # ~8k faces


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


def test_rasterize_two_triangles_cover_every_texel_once():
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    rows, cols, ids, bary = rasterize_uv(uv, faces, 8, max_candidates=10)  # groups of one triangle
    assert len(rows) == 64 and len(set(zip(rows.tolist(), cols.tolist()))) == 64
    # The barycentric weights give back each texel centre's uv (row 0 is v = 1: the image's top).
    back = np.einsum("nk,nkc->nc", bary, uv[faces[ids]])
    assert np.allclose(back, np.stack([(cols + 0.5) / 8, 1 - (rows + 0.5) / 8], axis=1))


def test_bake_samples_the_colour_function_and_fills_the_rest():
    # A triangle over the lower-left half of the texture, coloured by position: texels hold their point's colour.
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=mesh.vertices[:, :2].copy())
    image = bake_texture(mesh, lambda p: p, size=16).astype(np.float64) / 255
    x, y = 2, 13  # a texel inside: centre (u, v) = (2.5 / 16, 1 - 13.5 / 16)
    assert np.allclose(image[y, x], [2.5 / 16, 2.5 / 16, 0], atol=1 / 255)
    assert np.allclose(image[0, 15], image[1, 14])  # outside the triangle: its nearest covered texel's colour
    filled = fill_empty(np.array([[[1.0]], [[0.0]], [[0.0]]]).reshape(3, 1, 1), np.array([[True], [False], [False]]))
    assert filled.ravel().tolist() == [1.0, 1.0, 1.0]


def test_exported_formats_read_back_with_uvs_texture_and_target_faces(sphere, tmp_path):
    asset = make_asset(sphere, checker, target_faces=600, texture_size=128)
    paths, files = write_asset(asset, tmp_path)
    assert {p.name for p in files} == {"mesh.obj", "mesh.mtl", "mesh_albedo.png", "mesh.glb", "mesh.ply"}
    for fmt in ("obj", "glb"):
        back = trimesh.load(paths[fmt], force="mesh", process=False)
        assert isinstance(back.visual, trimesh.visual.TextureVisuals), fmt
        assert back.visual.uv.min() >= 0 and back.visual.uv.max() <= 1, fmt
        material = back.visual.material
        image = material.baseColorTexture if fmt == "glb" else material.image
        assert image.size == (128, 128), fmt
        assert abs(len(back.faces) - 600) <= 30, fmt
    ply = trimesh.load(paths["ply"], process=False)
    assert ply.visual.kind == "vertex" and abs(len(ply.faces) - 600) <= 30
    # The GLB: a PBR material (not metallic: glTF's default metallic 1 renders dark) and smooth normals.
    data = paths["glb"].read_bytes()
    gltf = json.loads(data[20:20 + int.from_bytes(data[12:16], "little")])
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" in pbr and pbr["metallicFactor"] == 0 and pbr["baseColorFactor"] == [1, 1, 1, 1]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(gltf["meshes"][0]["primitives"][0]["attributes"])


def test_texture_carries_the_detail_decimation_removes(sphere, tmp_path):
    """Rendered from the same cameras, the decimated textured GLB matches views of the finely coloured sphere
    better than the vertex-coloured mesh of the same faces (the PLY) does."""
    truth = trimesh.creation.icosphere(subdivisions=6, radius=RADIUS)  # 82k faces: colours finer than a pixel
    color_vertices(truth, checker)
    asset = make_asset(sphere, checker, target_faces=500, texture_size=256, origin="world")
    paths, _ = write_asset(asset, tmp_path, formats=("glb", "ply"))
    textured, vertex_colored = load_mesh(paths["glb"]), load_mesh(paths["ply"])  # the GLB turned back to z up
    assert len(textured.faces) == len(vertex_colored.faces)
    cams = [camera_from_spherical(20.0, az, 2.0, math.radians(40.0), 64) for az in (0.0, 130.0)]
    views, tex, vc = (np.stack([on_white(r.rgba) for r in render_mesh(m, cams)])
                      for m in (truth, textured, vertex_colored))
    psnr_texture, psnr_vertex = psnr(tex, views), psnr(vc, views)
    assert psnr_texture > psnr_vertex + 3.0, (psnr_texture, psnr_vertex)


@pytest.mark.parametrize("origin", ["center", "bottom", "world"])
def test_placement_and_scale(sphere, origin, tmp_path):
    shifted = sphere.copy()
    shifted.apply_translation([0.1, -0.2, 0.3])
    asset = make_asset(shifted, None, texture=False, origin=origin, scale=2.0)
    lo, hi = asset.mesh.bounds
    assert np.allclose(hi - lo, 2.0 * shifted.extents)
    expected = {"center": (lo + hi) / 2, "bottom": [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]],
                "world": (lo + hi) / 4 - [0.1, -0.2, 0.3]}[origin]
    assert np.allclose(expected, 0.0, atol=1e-6)
    assert np.allclose(shifted.bounds.mean(axis=0), [0.1, -0.2, 0.3], atol=1e-6)  # the input is untouched
    if origin == "bottom":  # on the ground: y = 0 in the y-up GLB
        glb = write_asset(asset, tmp_path, formats=("glb",))[0]["glb"]
        assert trimesh.load(glb, force="mesh", process=False).bounds[0, 1] == pytest.approx(0.0, abs=1e-6)


def test_no_colour_no_texture_and_bad_settings(sphere):
    asset = make_asset(sphere, None)  # the hull method: no colour function
    assert not isinstance(asset.mesh.visual, trimesh.visual.TextureVisuals) and len(asset.mesh.faces) == len(sphere.faces)
    with pytest.raises(InputError, match="export.origin='top'"):
        make_asset(sphere, None, origin="top")
    with pytest.raises(InputError, match="export.target_faces=2"):
        make_asset(sphere, None, target_faces=2)
    with pytest.raises(InputError, match="empty"):
        make_asset(trimesh.Trimesh(), None)
