"""Image loading: every format and bad input in the foundation issue, each with its message asserted."""
import numpy as np
import pytest
from PIL import Image

from img2mesh.data.errors import InputError
from img2mesh.data.images import load_image

from imagefiles import jpeg_with_orientation, object_rgba, png16_bytes


def save(tmp_path, name, arr, **kw):
    path = tmp_path / name
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_rgba_keeps_alpha(tmp_path, fmt):
    rgba = object_rgba()
    img = load_image(save(tmp_path, f"a.{fmt}", rgba, **({"lossless": True} if fmt == "webp" else {})))
    assert img.rgb.shape == (64, 96, 3) and img.rgb.dtype == np.uint8
    np.testing.assert_array_equal(img.alpha > 127, rgba[..., 3] > 127)
    assert img.notes == []


def test_rgb_jpeg_has_no_alpha(tmp_path):
    img = load_image(save(tmp_path, "a.jpg", object_rgba()[..., :3]))
    assert img.alpha is None and img.rgb.shape == (64, 96, 3)


def test_grayscale_becomes_rgb(tmp_path):
    img = load_image(save(tmp_path, "g.png", np.full((16, 20), 77, np.uint8)))
    assert img.rgb.shape == (16, 20, 3) and (img.rgb == 77).all()


def test_grayscale_16bit_scaled_to_8bit(tmp_path):
    path = tmp_path / "g16.png"
    path.write_bytes(png16_bytes(np.full((16, 17, 1), 65535 // 2, np.uint16)))
    img = load_image(path)
    assert img.rgb.shape == (16, 17, 3) and abs(int(img.rgb[0, 0, 0]) - 128) <= 1


def test_rgba_16bit(tmp_path):
    arr = np.zeros((16, 16, 4), np.uint16)
    arr[2:6, 2:6] = (65535, 0, 0, 65535)
    path = tmp_path / "c16.png"
    path.write_bytes(png16_bytes(arr))
    img = load_image(path)
    assert img.alpha is not None and img.alpha[3, 3] == 255 and img.alpha[0, 0] == 0
    assert tuple(img.rgb[3, 3]) == (255, 0, 0)


def test_exif_orientation_honoured(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # wide image, left half white
    arr[:, :20] = 255
    path = tmp_path / "rot.jpg"
    path.write_bytes(jpeg_with_orientation(arr, 6))  # 6: rotate 90 deg clockwise to display
    img = load_image(path)
    assert img.rgb.shape == (40, 20, 3)  # displayed tall
    assert img.rgb[:15].mean() > 200 and img.rgb[25:].mean() < 50  # left half turned into the top


def test_palette_with_transparency(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(object_rgba()).quantize(colors=4).save(path, transparency=0)
    img = load_image(path)
    assert img.rgb.shape == (64, 96, 3) and img.alpha is not None


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text")
    with pytest.raises(InputError, match="is not an image img2mesh can read"):
        load_image(path)


def test_truncated_file(tmp_path):
    good = save(tmp_path, "full.png", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_huge_image_downscaled_with_note(tmp_path):
    path = save(tmp_path, "wide.png", np.full((40, 9000, 3), 10, np.uint8))
    img = load_image(path)
    assert img.rgb.shape[1] == 8192
    assert any("downscaled from 9000x40" in n for n in img.notes)


def test_opaque_alpha_is_dropped_with_note(tmp_path):
    rgba = object_rgba()
    rgba[..., 3] = 255
    img = load_image(save(tmp_path, "a.png", rgba))
    assert img.alpha is None
    assert any("fully opaque" in n for n in img.notes)


def test_fully_transparent_image_is_refused(tmp_path):
    rgba = object_rgba()
    rgba[..., 3] = 0
    with pytest.raises(InputError, match="fully transparent .*save it without the alpha channel"):
        load_image(save(tmp_path, "a.png", rgba))


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 300, 3)])
def test_tiny_image_is_refused(tmp_path, shape):
    with pytest.raises(InputError, match=f"is {shape[1]}x{shape[0]} pixels, too small"):
        load_image(save(tmp_path, "tiny.png", np.full(shape, 90, np.uint8)))
