"""SyncDreamer's input preparation and cameras, item by item as the original does them (docs/reference.md):
the crop rule (alpha > 0 box with PIL's exclusive right/bottom edge, int() truncation of the new size),
premultiplied bicubic resize, white compositing, RGB inputs padded black and not whitened; float32 azimuths
with view 8 at -180; K scaled with the image; the target cameras placed as the original renders them."""
import math

import numpy as np
import pytest
import torch

from img2mesh.data.errors import InputError
from img2mesh.diffusion.syncdreamer.cameras import (target_azimuths, target_cameras, target_intrinsics,
                                                    target_poses)
from img2mesh.diffusion.syncdreamer.inputs import prepare_input


def rgba_object(h=120, w=160, box=(30, 20, 70, 90), colour=(0, 200, 0)):
    """A green rectangle (x0, y0, x1, y1 inclusive) on a transparent red background."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = (255, 0, 0)  # colour under alpha 0: must never show
    alpha = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    rgb[y0:y1 + 1, x0:x1 + 1] = colour
    alpha[y0:y1 + 1, x0:x1 + 1] = 255
    return rgb, alpha


def object_extent(image):
    """(width, height) of the pixels that are not white."""
    ys, xs = np.nonzero(np.any(image < 0.99, axis=-1))
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def test_crop_drops_the_last_row_and_column_of_the_box_and_resizes_its_longer_side():
    rgb, alpha = rgba_object(box=(30, 20, 69, 89))  # 40 x 70 px object
    rgb[:, 69] = (0, 0, 255)  # the box's last column, blue: PIL's exclusive right edge drops it
    rgb[89, :] = (0, 0, 255)  # and its last row
    out = prepare_input(rgb, alpha, 256, crop_size=200)  # [-1, 1]
    image = (out + 1) / 2
    assert out.shape == (256, 256, 3) and out.dtype == np.float32
    # the crop is 39 x 69 (not 40 x 70): scale 200 / 69, sides int(scale * side)
    w, h = object_extent(image)
    assert (w, h) == (int(200 / 69 * 39), int(200 / 69 * 69))
    # green on white everywhere: no blue column survived, no red bled in from under alpha 0 (premultiplied)
    assert np.all(image[..., 2] <= image[..., 1] + 0.02) and np.all(image[..., 0] <= image[..., 1] + 0.02)
    # centred as the original pastes: ((256 - w) // 2, (256 - h) // 2)
    ys, xs = np.nonzero(np.any(image < 0.99, axis=-1))
    assert (xs.min(), ys.min()) == ((256 - w) // 2, (256 - h) // 2)


def test_the_new_size_is_truncated_not_rounded():
    side = next(m for m in range(2, 400) if int(200 / m * m) == 199)  # float error lands just below 200
    rgb, alpha = rgba_object(h=side + 20, w=side + 20, box=(5, 5, 5 + side, 5 + side))  # crop: side x side
    w, h = object_extent((prepare_input(rgb, alpha, 256, 200) + 1) / 2)
    assert (w, h) == (199, 199)


def test_crop_size_is_measured_at_256_px_and_scales_with_the_model():
    rgb, alpha = rgba_object(box=(30, 20, 69, 89))
    w, h = object_extent((prepare_input(rgb, alpha, 64, 200) + 1) / 2)
    assert (w, h) == (int(50 / 69 * 39), int(50 / 69 * 69))


def test_keep_framing_pads_square_transparent_and_composites_on_white():
    rgb, alpha = rgba_object(h=100, w=200, box=(0, 0, 199, 49))  # top half opaque green, bottom transparent
    out = prepare_input(rgb, alpha, 64, crop_size=-1)
    image = (out + 1) / 2
    # 200 x 100 padded to 200 x 200 (50 rows above and below), then 64 px: the object is rows 16..32
    assert np.allclose(image[:14], 1.0) and np.allclose(image[36:], 1.0)  # padding and transparency -> white
    assert np.allclose(image[20:28], [0, 200 / 255, 0], atol=0.02)
    assert image[..., 0].max() < 1.0 + 1e-6 and image[18:30, :, 0].max() < 0.05  # no red from under alpha 0


def test_rgb_inputs_are_padded_black_and_not_whitened():
    rgb = np.full((50, 100, 3), 180, np.uint8)
    out = prepare_input(rgb, None, 32, crop_size=-1)
    assert np.allclose(out[:6], -1.0) and np.allclose(out[-6:], -1.0)  # black padding, kept black
    assert np.allclose(out[12:20], 180 / 255 * 2 - 1, atol=0.01)
    with pytest.raises(InputError, match="no alpha channel"):
        prepare_input(rgb, None, 32, crop_size=200)


def test_empty_or_bad_crops_are_one_line_errors():
    rgb, alpha = rgba_object()
    with pytest.raises(InputError, match="mask is empty"):
        prepare_input(rgb, np.zeros_like(alpha), 256, 200)
    with pytest.raises(InputError, match="crop_size"):
        prepare_input(rgb, alpha, 256, 0)


def test_azimuths_are_float32_wrapped_with_view_8_at_minus_180():
    az = target_azimuths()
    assert az.dtype == torch.float32 and az[0] == 0.0
    assert az[8] == torch.tensor(-math.pi, dtype=torch.float32)  # -180 deg, not +180
    assert torch.allclose(az[1], torch.tensor(math.pi / 8)) and torch.all(az[9:] < 0)


def test_intrinsics_scale_with_the_image():
    k256, k64 = target_intrinsics(256), target_intrinsics(64)
    assert k256.shape == (16, 3, 3) and k256.dtype == torch.float32
    assert k256[0].tolist() == [[280, 0, 128], [0, 280, 128], [0, 0, 1]]
    assert torch.allclose(k64[0], torch.tensor([[70.0, 0, 32], [0, 70, 32], [0, 0, 1]]))
    # the views' cameras carry the same lens
    for size, k in ((256, k256), (64, k64)):
        assert np.allclose(target_cameras(size)[0].intrinsics, k[0].numpy(), atol=1e-4)


def test_target_cameras_are_placed_as_the_original_renders_them():
    cams = target_cameras(256, input_azimuth=40.0)
    for k, cam in enumerate(cams):
        assert cam.elevation == pytest.approx(30.0) and cam.radius == pytest.approx(1.5)
        assert cam.azimuth == pytest.approx((40.0 + 22.5 * k) % 360.0)  # counter-clockwise from above (+x -> +y)
    # the original's poses: position (cos az cos el, sin az cos el, sin el) * 1.5, looking at the origin with
    # z up, as world-to-camera OpenCV matrices
    poses = target_poses()
    for k in (0, 3, 8):
        az, el = math.radians(22.5 * k), math.radians(30.0)
        pos = 1.5 * np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        forward = -pos / np.linalg.norm(pos)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward])
        assert np.allclose(poses[k, :, :3].numpy(), rot, atol=1e-6)
        assert np.allclose(poses[k, :, 3].numpy(), -rot @ pos, atol=1e-6)
