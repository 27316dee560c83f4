"""Posed views: the format the generator writes and the reconstructor reads.

On disk a views folder is a Blender/NeRF-synthetic dataset:

    views/
      transforms.json      {"camera_angle_x": rad, "frames": [{"file_path": "./r_000",
                             "transform_matrix": 4x4 OpenGL c2w, "is_input": bool, ...}, ...]}
      r_000.png ...        RGBA, straight alpha: RGB is the colour, alpha the object mask

``transforms_train.json`` is accepted too (Zero-1-to-3's scenes), as is a file path without extension
(``.png`` is then appended, as NeRF loaders do). Extra per-frame keys (elevation, azimuth, radius) are
written for people reading the file; the matrix is the source of truth.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .cameras import Camera
from .errors import InputError
from .io import atomic_write_bytes, atomic_write_text, png_bytes

TRANSFORMS_NAMES = ("transforms.json", "transforms_train.json")


def on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA [..., 4] float in [0, 1] -> RGB [..., 3] composited onto a white background."""
    a = rgba[..., 3:]
    return rgba[..., :3] * a + (1.0 - a)


@dataclass
class View:
    """One posed image."""

    rgba: np.ndarray  # [H, W, 4] float32 in [0, 1], straight (not premultiplied) alpha
    camera: Camera
    name: str = ""
    is_input: bool = False

    def __post_init__(self):
        assert self.rgba.ndim == 3 and self.rgba.shape[2] == 4, f"rgba must be [H, W, 4], got {self.rgba.shape}"
        assert self.rgba.shape[:2] == (self.camera.height, self.camera.width), (
            f"image {self.rgba.shape[:2]} does not match camera {(self.camera.height, self.camera.width)}"
        )

    @property
    def mask(self) -> np.ndarray:  # [H, W] float32 in [0, 1]
        return self.rgba[..., 3]

    @property
    def rgb_on_white(self) -> np.ndarray:  # [H, W, 3] float32, composited onto a white background
        return on_white(self.rgba)


@dataclass
class Views:
    """An ordered list of posed views; the input view(s) carry ``is_input``."""

    views: list[View] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.views)

    def __iter__(self):
        return iter(self.views)

    def __getitem__(self, i: int) -> View:
        return self.views[i]

    @property
    def cameras(self) -> list[Camera]:
        return [v.camera for v in self.views]


def rgba_to_uint8(rgba: np.ndarray) -> np.ndarray:
    return (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_views(views: Views, directory: str | os.PathLike) -> Path:
    """Write ``views`` as a NeRF-format folder (images first, ``transforms.json`` last, each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not views.views:
        raise InputError("no views to write")
    fov = views[0].camera.fov_x
    frames = []
    for i, view in enumerate(views):
        name = view.name or f"r_{i:03d}"
        atomic_write_bytes(directory / f"{name}.png", png_bytes(rgba_to_uint8(view.rgba)))
        cam = view.camera
        frame = {
            "file_path": f"./{name}",
            "transform_matrix": cam.c2w.tolist(),
            "is_input": bool(view.is_input),
            "elevation": round(cam.elevation, 6),
            "azimuth": round(cam.azimuth, 6),
            "radius": round(cam.radius, 6),
        }
        if not math.isclose(cam.fov_x, fov, rel_tol=1e-9):
            frame["camera_angle_x"] = cam.fov_x
        frames.append(frame)
    meta = {"camera_angle_x": fov, "frames": frames}
    atomic_write_text(directory / "transforms.json", json.dumps(meta, indent=2))
    return directory


def find_transforms(directory: Path) -> Path:
    for name in TRANSFORMS_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise InputError(f"{directory} is not a views folder: it has no {' or '.join(TRANSFORMS_NAMES)}")


def read_views(directory: str | os.PathLike, require_mask: bool = True) -> Views:
    """Read a NeRF-format views folder; every problem is one :class:`InputError` line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"views folder {directory} does not exist")
    path = find_transforms(directory)
    try:
        meta = json.loads(path.read_text())
        fov = float(meta["camera_angle_x"])
        frames = meta["frames"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} is not a NeRF transforms file ({type(e).__name__}: {e}); "
                         "it needs 'camera_angle_x' and 'frames'") from None
    if not frames:
        raise InputError(f"{path} lists no frames")
    views, size = [], None
    for i, frame in enumerate(frames):
        try:
            rel = frame["file_path"]
            c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'") from None
        if c2w.shape != (4, 4):
            raise InputError(f"{path}: frame {i} transform_matrix is {list(c2w.shape)}, expected 4x4")
        image_path = directory / rel
        if image_path.suffix == "":
            image_path = image_path.with_suffix(".png")
        if not image_path.is_file():
            raise InputError(f"{path}: frame {i} image {image_path} is missing")
        try:
            with Image.open(image_path) as im:
                im.load()
                has_alpha = im.mode in ("RGBA", "LA") or "transparency" in im.info
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        except OSError as e:
            raise InputError(f"{image_path} is not a readable image ({e})") from None
        if not has_alpha and require_mask:
            raise InputError(f"{image_path} has no alpha channel: views need an object mask in alpha "
                             "(run background removal first)")
        if size is None:
            size = rgba.shape[:2]
        elif rgba.shape[:2] != size:
            raise InputError(f"{image_path} is {rgba.shape[1]}x{rgba.shape[0]} but the first view is "
                             f"{size[1]}x{size[0]}: all views must have the same size")
        camera = Camera(c2w, float(frame.get("camera_angle_x", fov)), rgba.shape[1], rgba.shape[0])
        name = Path(rel).stem
        views.append(View(rgba, camera, name=name, is_input=bool(frame.get("is_input", i == 0))))
    return Views(views)
