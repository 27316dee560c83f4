"""Export: OBJ/PLY/GLB reload with the same vertices and colours, GLB is y-up; turntable and grid."""
import numpy as np
import pytest
import trimesh

from img2mesh.data.errors import InputError
from img2mesh.recon.mesh.export import export_mesh, render_turntable, views_grid
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh


@pytest.fixture
def coloured_box():
    box = trimesh.creation.box(extents=(0.2, 0.3, 0.9))  # tall along world z
    box = box.subdivide()
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(len(box.vertices), 4), dtype=np.uint8)
    colours[:, 3] = 255
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=colours)
    return box


def test_formats_reload_with_same_vertices_and_colours(coloured_box, tmp_path):
    paths = export_mesh(coloured_box, tmp_path, stem="box")
    assert set(paths) == {"obj", "glb", "ply"} and all(p.is_file() for p in paths.values())
    assert (tmp_path / "box.mtl").is_file() and "mtllib box.mtl" in paths["obj"].read_text()
    for fmt, path in paths.items():
        back = load_mesh(path)  # GLB: rotated back from y-up
        assert len(back.vertices) == len(coloured_box.vertices), fmt
        assert np.allclose(back.vertices, coloured_box.vertices, atol=1e-6), fmt
        assert np.array_equal(back.visual.vertex_colors, coloured_box.visual.vertex_colors), fmt
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporaries


def test_glb_is_y_up(coloured_box, tmp_path):
    path = export_mesh(coloured_box, tmp_path, formats=("glb",))["glb"]
    raw = trimesh.load(path, process=False).to_mesh()  # as a glTF viewer sees it, no conversion
    assert np.argmax(raw.extents) == 1  # tall along world z -> tall along glTF's +y
    assert raw.bounds[1, 1] == pytest.approx(0.45) and raw.extents[2] == pytest.approx(0.3)


def test_textured_mesh_exports_its_texture(shared, tmp_path):
    spot = normalize_mesh(load_mesh(shared / "meshes" / "spot" / "spot_triangulated.obj", up="y"))
    paths = export_mesh(spot, tmp_path, stem="spot")
    mtl = (tmp_path / "spot.mtl").read_text()
    texture = mtl.split("map_Kd ")[1].split()[0]
    assert texture.startswith("spot_") and (tmp_path / texture).is_file()
    assert "Kd 1.00000000 1.00000000 1.00000000" in mtl  # viewers multiply the texture by Kd: keep it white
    for fmt in ("obj", "glb"):
        back = load_mesh(paths[fmt])
        assert isinstance(back.visual, trimesh.visual.TextureVisuals), fmt
        material = back.visual.material
        image = material.baseColorTexture if hasattr(material, "baseColorTexture") else material.image
        assert image.size == (1024, 1024), fmt
        if fmt == "glb":
            assert list(material.baseColorFactor) == [255, 255, 255, 255]  # not trimesh's 0.4 grey default
        assert np.allclose(back.bounds, spot.bounds, atol=1e-5), fmt
    ply = load_mesh(paths["ply"])  # texture baked to vertex colours
    assert ply.visual.kind == "vertex" and len(np.unique(ply.visual.vertex_colors, axis=0)) > 20


def test_bad_exports_are_input_errors(coloured_box, tmp_path):
    with pytest.raises(InputError, match="empty"):
        export_mesh(trimesh.Trimesh(), tmp_path)
    with pytest.raises(InputError, match="unknown export format"):
        export_mesh(coloured_box, tmp_path, formats=("stl",))


def test_turntable_and_grid(coloured_box, tmp_path):
    import imageio.v2 as imageio

    path = render_turntable(coloured_box, tmp_path / "turntable.mp4", n_frames=4, size=33, supersample=1)
    frames = imageio.mimread(path)
    assert len(frames) == 4 and frames[0].shape == (34, 34, 3)  # odd size rounded up to even for yuv420p
    assert frames[0].mean() < 250  # the object is in frame, not a blank white video
    rgba = np.zeros((10, 12, 4), np.float32)
    rgba[..., 0] = rgba[..., 3] = 1.0  # opaque red
    grid = views_grid([rgba] * 4 + [np.zeros((10, 12, 4), np.float32)], tmp_path / "grid.png", pad=2)
    img = imageio.imread(grid)
    assert img.shape == (2 * 10 + 2, 3 * 12 + 4, 3)
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[15, 30]) == (255, 255, 255)  # transparent -> white
