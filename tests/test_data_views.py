"""The NeRF-format views folder: round trip and every malformed folder gives one clear line."""
import json

import numpy as np
import pytest
from PIL import Image

from img2mesh.data.cameras import ring_cameras
from img2mesh.data.errors import InputError
from img2mesh.data.views import View, Views, read_views, write_views


def make_views(n=3, size=16):
    rng = np.random.default_rng(0)
    views = []
    for i, cam in enumerate(ring_cameras(n, 20.0, size=size)):
        rgba = rng.random((size, size, 4)).astype(np.float32)
        rgba[..., 3] = (rgba[..., 3] > 0.5).astype(np.float32)
        views.append(View(rgba, cam, is_input=i == 0))
    return Views(views)


def test_round_trip(tmp_path):
    views = make_views()
    write_views(views, tmp_path)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert meta["frames"][1]["azimuth"] == pytest.approx(120.0)
    back = read_views(tmp_path)
    assert len(back) == 3 and back[0].is_input and not back[1].is_input
    for a, b in zip(views, back):
        np.testing.assert_allclose(a.rgba, b.rgba, atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(a.camera.c2w, b.camera.c2w)
        assert a.camera.fov_x == pytest.approx(b.camera.fov_x)


def test_rgb_on_white():
    view = make_views(1)[0]
    view.rgba[0, 0] = (0.2, 0.4, 0.6, 0.0)
    np.testing.assert_allclose(view.rgb_on_white[0, 0], 1.0)


def test_reads_zero123_scene_layout(shared):
    views = read_views(shared / "scenes/nerf_wild/pikachu")
    assert views[0].is_input and views[0].camera.elevation == pytest.approx(20.0)


def test_missing_folder_and_transforms(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_views(tmp_path / "nope")
    with pytest.raises(InputError, match="has no transforms.json"):
        read_views(tmp_path)


def test_malformed_transforms(tmp_path):
    (tmp_path / "transforms.json").write_text('{"frames": []}')
    with pytest.raises(InputError, match="needs 'camera_angle_x' and 'frames'"):
        read_views(tmp_path)
    (tmp_path / "transforms.json").write_text("not json")
    with pytest.raises(InputError, match="is not a NeRF transforms file"):
        read_views(tmp_path)


def test_missing_image(tmp_path):
    write_views(make_views(), tmp_path)
    (tmp_path / "r_001.png").unlink()
    with pytest.raises(InputError, match="r_001.png is missing"):
        read_views(tmp_path)


def test_images_of_different_sizes(tmp_path):
    write_views(make_views(), tmp_path)
    Image.new("RGBA", (8, 8)).save(tmp_path / "r_002.png")
    with pytest.raises(InputError, match="all views must have the same size"):
        read_views(tmp_path)


def test_views_without_mask(tmp_path):
    write_views(make_views(), tmp_path)
    Image.new("RGB", (16, 16)).save(tmp_path / "r_001.png")
    with pytest.raises(InputError, match="has no alpha channel"):
        read_views(tmp_path)


def test_bad_matrix(tmp_path):
    write_views(make_views(), tmp_path)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="expected 4x4"):
        read_views(tmp_path)
