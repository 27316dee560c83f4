"""Zero-1-to-3 preprocessing and background removal with the real u2netp model."""
import re

import numpy as np
import pytest

from img2mesh.data.background import remove_background
from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.config import DataConfig
from img2mesh.data.errors import InputError, ResourceError
from img2mesh.data.images import load_image
from img2mesh.data.preprocess import foreground_box, preprocess, recentre

from imagefiles import object_rgba


def test_longer_side_is_200_and_centred():
    rgba = object_rgba(size=(300, 200), box=(50, 40, 170, 100))  # 120 x 60 object
    out = recentre(rgba[..., :3], rgba[..., 3])
    assert out.shape == (256, 256, 4)
    x0, y0, x1, y1 = foreground_box((out[..., 3] * 255).astype(np.uint8))
    assert abs((x1 - x0) - 200) <= 2 and abs((y1 - y0) - 100) <= 2
    assert abs((x0 + x1) / 2 - 128) <= 1 and abs((y0 + y1) / 2 - 128) <= 1
    assert (out[0, 0, :3] == 1.0).all()  # white background
    np.testing.assert_allclose(out[128, 128, :3], np.array([200, 30, 30]) / 255, atol=0.02)


def test_ratio_is_configurable():
    rgba = object_rgba()
    out = recentre(rgba[..., :3], rgba[..., 3], size=128, foreground_ratio=0.5)
    x0, y0, x1, y1 = foreground_box((out[..., 3] * 255).astype(np.uint8))
    assert abs((x1 - x0) - 64) <= 2


def test_empty_mask_is_a_clear_error():
    with pytest.raises(InputError, match="no foreground object found"):
        recentre(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8))


def test_preprocess_resizes_camera():
    rgba = object_rgba()
    cam = camera_from_spherical(10, 0, 2.0, width=96, height=64)
    prepared = preprocess(rgba[..., :3], rgba[..., 3], cam, DataConfig())
    assert prepared.camera.width == 256 and prepared.camera.fov_x == cam.fov_x
    assert prepared.rgb_on_white.shape == (256, 256, 3)


def test_rembg_u2netp_finds_the_object(shared):
    img = load_image(shared / "scenes/nerf_wild/pikachu/train/r_0.png")
    a = img.alpha[..., None].astype(np.float32) / 255
    on_white = (img.rgb * a + 255 * (1 - a)).astype(np.uint8)[::4, ::4]  # 200 px keeps the test quick
    mask = remove_background(on_white, "u2netp")
    agreement = ((mask > 127) == (img.alpha[::4, ::4] > 127)).mean()
    assert agreement > 0.98


def test_missing_rembg_model_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(ResourceError, match=r"offline mode\): put u2netp.onnx \(from https://github.com/.*\) at "
                                             + re.escape(str(tmp_path / "models" / "u2netp" / "u2netp.onnx"))
                                             + ", or set U2NET_HOME"):
        remove_background(np.zeros((8, 8, 3), np.uint8), "u2netp")
