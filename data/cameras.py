"""Cameras in img2mesh's one world frame.

World frame: right-handed, **z up**, the object centred at the origin (the Blender / NeRF-synthetic
frame that Zero-1-to-3's scenes use). Only GLB export converts to y-up.

Camera frame: OpenGL camera-to-world (``c2w``) matrices: camera x right, y up, looking along -z.

Spherical coordinates of a camera position:
- elevation: degrees above the xy-plane (polar angle from +z is ``90 - elevation``),
- azimuth: degrees from +x towards +y, i.e. ``atan2(y, x)``,
- radius: distance to the origin.
Zero-1-to-3 scenes put the input camera at azimuth 90, radius 2, horizontal FoV 0.857 rad.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_FOV_X = 0.8569566627292158  # rad (~49.1 deg): Zero-1-to-3 renders and SyncDreamer (fx = 280 at 256 px)
DEFAULT_RADIUS = 2.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with a square-pixel, centred principal point."""

    c2w: np.ndarray  # [4, 4] float64, OpenGL camera-to-world
    fov_x: float  # horizontal field of view, radians
    width: int
    height: int

    def __post_init__(self):
        c2w = np.asarray(self.c2w, dtype=np.float64)
        assert c2w.shape == (4, 4), f"c2w must be [4, 4], got {c2w.shape}"
        object.__setattr__(self, "c2w", c2w)

    @property
    def position(self) -> np.ndarray:  # [3]
        return self.c2w[:3, 3].copy()

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.position))

    @property
    def elevation(self) -> float:
        """Degrees above the xy-plane."""
        x, y, z = self.position
        return math.degrees(math.atan2(z, math.hypot(x, y)))

    @property
    def azimuth(self) -> float:
        """Degrees from +x towards +y, in [0, 360)."""
        x, y, _ = self.position
        return math.degrees(math.atan2(y, x)) % 360.0

    @property
    def focal(self) -> float:
        """Focal length in pixels (fx = fy)."""
        return 0.5 * self.width / math.tan(0.5 * self.fov_x)

    @property
    def intrinsics(self) -> np.ndarray:  # [3, 3]
        f = self.focal
        return np.array([[f, 0.0, 0.5 * self.width], [0.0, f, 0.5 * self.height], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int | None = None) -> "Camera":
        """Same pose and field of view at another image size."""
        return Camera(self.c2w, self.fov_x, int(width), int(height if height is not None else width))


def spherical_to_position(elevation: float, azimuth: float, radius: float) -> np.ndarray:
    """Degrees, degrees, distance -> [3] position in the z-up world."""
    el, az = math.radians(elevation), math.radians(azimuth)
    return radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL c2w [4, 4] of a camera at ``eye`` looking at ``target``.

    Straight above or below the target, where ``up`` is parallel to the view direction, the camera's
    up falls back to +y so the pose stays defined.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target  # camera +z points away from what it looks at
    norm = np.linalg.norm(back)
    if norm < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    back /= norm
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
    return c2w


def camera_from_spherical(
    elevation: float,
    azimuth: float,
    radius: float = DEFAULT_RADIUS,
    fov_x: float = DEFAULT_FOV_X,
    width: int = 256,
    height: int | None = None,
) -> Camera:
    """A camera on a sphere around the origin, looking at it, z up."""
    c2w = look_at(spherical_to_position(elevation, azimuth, radius))
    return Camera(c2w, fov_x, width, height if height is not None else width)


def ring_cameras(
    num_views: int,
    elevation: float,
    radius: float = DEFAULT_RADIUS,
    fov_x: float = DEFAULT_FOV_X,
    size: int = 256,
    start_azimuth: float = 0.0,
) -> list[Camera]:
    """``num_views`` cameras evenly spaced in azimuth at one elevation, starting at ``start_azimuth``."""
    step = 360.0 / num_views
    return [
        camera_from_spherical(elevation, (start_azimuth + i * step) % 360.0, radius, fov_x, size)
        for i in range(num_views)
    ]


def camera_rays(
    camera: Camera, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through every pixel centre, row-major.

    Returns origins [H * W, 3] and unit directions [H * W, 3].
    """
    h, w, f = camera.height, camera.width, camera.focal
    v, u = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    dirs_cam = torch.stack([(u - 0.5 * w) / f, -(v - 0.5 * h) / f, -torch.ones_like(u)], dim=-1)  # [H, W, 3]
    c2w = torch.from_numpy(camera.c2w)
    dirs = dirs_cam.reshape(-1, 3) @ c2w[:3, :3].T  # [H * W, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:3, 3].expand_as(dirs)
    return origins.to(device, dtype).contiguous(), dirs.to(device, dtype).contiguous()


def project_points(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> pixel coordinates [N, 2] (u right, v down) and depth along -z [N]."""
    w2c = np.linalg.inv(camera.c2w)
    p = points @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3] in camera frame
    depth = -p[:, 2]
    f = camera.focal
    with np.errstate(divide="ignore", invalid="ignore"):
        u = f * p[:, 0] / depth + 0.5 * camera.width
        v = -f * p[:, 1] / depth + 0.5 * camera.height
    return np.stack([u, v], axis=-1), depth


SYNCDREAMER_ELEVATION = 30.0
SYNCDREAMER_RADIUS = 1.5
SYNCDREAMER_FOV_X = 2.0 * math.atan(128.0 / 280.0)  # fx = fy = 280 at 256 px


def camera_layout(
    spec: str,
    elevation: float = 20.0,
    radius: float = DEFAULT_RADIUS,
    fov_x: float = DEFAULT_FOV_X,
    size: int = 256,
    start_azimuth: float = 0.0,
) -> list[Camera]:
    """Cameras by name: ``ringN`` (N views at ``elevation``), ``syncdreamer16`` (16 views at 30 deg,
    distance 1.5, fx = 280 at 256 px, azimuth 0, 22.5, ...), or the path of a NeRF-format cameras JSON."""
    spec = str(spec)
    if spec.startswith("ring") and spec[4:].isdigit() and int(spec[4:]) > 0:
        return ring_cameras(int(spec[4:]), elevation, radius, fov_x, size, start_azimuth)
    if spec == "syncdreamer16":
        return ring_cameras(16, SYNCDREAMER_ELEVATION, SYNCDREAMER_RADIUS, SYNCDREAMER_FOV_X, size, start_azimuth)
    if spec.endswith(".json"):
        return read_cameras_json(spec, size)
    from .errors import InputError

    raise InputError(f"unknown camera layout {spec!r}: use ringN (e.g. ring36), syncdreamer16, or a cameras .json file")


def read_cameras_json(path, size: int = 256) -> list[Camera]:
    """Cameras from a NeRF transforms file (``camera_angle_x`` + frames' ``transform_matrix``).

    Image size comes from the file's ``w``/``h`` keys when present, else ``size`` (square).
    """
    import json
    from pathlib import Path

    from .errors import InputError

    try:
        meta = json.loads(Path(path).read_text())
        fov = float(meta["camera_angle_x"])
        w, h = int(meta.get("w", size)), int(meta.get("h", size))
        cams = [Camera(f["transform_matrix"], float(f.get("camera_angle_x", fov)), w, h) for f in meta["frames"]]
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise InputError(f"{path} is not a cameras file ({type(e).__name__}: {e}); it needs 'camera_angle_x' "
                         "and 'frames' with 4x4 'transform_matrix'") from None
    if not cams:
        raise InputError(f"{path} lists no cameras")
    return cams


def mean_up(cameras: list[Camera]) -> np.ndarray:
    """The world's up [3] as the cameras see it: the mean of their up vectors (c2w's y column), unit length.
    Around a ring the tilts towards the object cancel; photos and renders are taken roughly upright, so this
    holds for any world frame (z up here, y up in most OBJ files). Within 1e-6 of a world axis it is that
    axis exactly, so axis-aligned frames compute bit-identically."""
    up = np.mean([c.c2w[:3, 1] for c in cameras], axis=0)
    norm = float(np.linalg.norm(up))
    if norm < 1e-6:
        from .errors import InputError

        raise InputError("the cameras' up vectors cancel out: no up direction can be taken from them")
    up = up / norm
    axis = int(np.argmax(np.abs(up)))
    if abs(abs(up[axis]) - 1.0) < 1e-6:
        up = np.eye(3)[axis] * np.sign(up[axis])
    return up
