"""The benchmark's view sets: one ground-truth mesh seen the ways the product meets views.

    from view_sets import make_view_set
    views, gt = make_view_set("cow", "moderate")        # 36 views; the set's own size unless size= is given

(a) ``exact``: the project's renderer (2x2 supersampled, soft alpha edges, Lambertian, light fixed in the world).
(b) ``binary``: the same rendered with one ray per pixel, so the alpha is 0 or 1 and nothing is
    antialiased (SAM, thresholded mattes, renderers without antialiasing). Not the 2x2 render's alpha
    thresholded at 0.5: its coverage comes in quarters, a tie at 0.5 is common (a fifth of the edge pixels),
    and ">= 0.5" dilates every mask by 0.10-0.15 px ("> 0.5" erodes by as much), a bias no real matte has;
    ``shading``: a view-dependent headlight and a white specular lobe of ``strength``;
    ``binary+shading``: both.
(c) ``mild`` / ``moderate`` / ``severe``: generated-like views at 256 px. View 0 is the input and exact; every
    other view's errors grow linearly with its angular distance from the input (f = angle / 180 deg):
    - pose: the view is rendered from its nominal camera turned about the object's centre by up to
      ``pose_deg`` x f in azimuth, elevation and roll, and moved by up to ``distance`` x f of its distance,
      while the views keep the nominal camera;
    - shape: a smooth random warp of the image (a 4 x 4 grid of random offsets, bicubic) of ``warp_px`` x f
      pixels at most (at 256 px; scaled with the size);
    - colour: a per-channel gain of 1 +- ``gain`` x f and a Gaussian blur of ``blur_px`` x f;
    - masks: every generated view's alpha blurred by ``mask_blur_px`` (soft, as a matting model's).
    Everything is seeded from the view index and the object's name: the same set every time.
The level parameters are also tabled in experiments/README.md.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from gt_views import gt_mesh
from img2mesh.data.cameras import DEFAULT_FOV_X, DEFAULT_RADIUS, Camera, ring_cameras
from img2mesh.data.views import View, Views
from img2mesh.recon.mesh.raycast import Light, render_mesh, render_views


@dataclass(frozen=True)
class Level:
    pose_deg: float  # largest azimuth / elevation / roll error, at 180 deg from the input
    distance: float  # largest relative camera-distance error
    warp_px: float  # largest image warp, px at 256 px
    gain: float  # largest per-channel colour gain error
    blur_px: float  # Gaussian blur sigma, px at 256 px
    mask_blur_px: float  # alpha blur sigma of every generated view, px at 256 px


LEVELS = {
    "mild": Level(pose_deg=1.0, distance=0.01, warp_px=1.0, gain=0.03, blur_px=0.3, mask_blur_px=0.5),
    "moderate": Level(pose_deg=3.0, distance=0.03, warp_px=3.0, gain=0.08, blur_px=0.6, mask_blur_px=0.8),
    "severe": Level(pose_deg=6.0, distance=0.06, warp_px=6.0, gain=0.15, blur_px=1.0, mask_blur_px=1.2),
}
VIEW_SETS = ("exact", "binary", "shading", "binary+shading", *LEVELS)
SET_SIZE = {"mild": 256, "moderate": 256, "severe": 256}  # the generator's size; the others follow the preset


def shading_light(strength: float) -> Light:
    """A view-dependent light: at ``strength`` s, diffuse 0.65 (1 - s), headlight |n.v| 0.65 s, specular 0.5 s."""
    return Light(diffuse=0.65 * (1.0 - strength), headlight=0.65 * strength, specular=0.5 * strength)


def make_view_set(name: str, view_set: str, size: int = 128, n: int = 36, elevation: float = 20.0,
                  strength: float = 0.5):
    """(views, normalised ground-truth mesh): 36 ring views at 20 deg of the named test mesh, as ``view_set``."""
    if view_set not in VIEW_SETS:
        raise KeyError(f"unknown view set {view_set!r}: choose from {', '.join(VIEW_SETS)}")
    mesh = gt_mesh(name)
    size = SET_SIZE.get(view_set, size)
    cameras = ring_cameras(n, elevation, DEFAULT_RADIUS, DEFAULT_FOV_X, size)
    if view_set in LEVELS:
        return generated_like(mesh, cameras, LEVELS[view_set], seed=zlib.crc32(name.encode())), mesh
    light = shading_light(strength) if "shading" in view_set else Light()
    return render_views(mesh, cameras, light=light, supersample=1 if "binary" in view_set else 2), mesh


def angle_from(a: Camera, b: Camera) -> float:
    """Degrees between two cameras' directions from the object's centre."""
    pa, pb = a.position / np.linalg.norm(a.position), b.position / np.linalg.norm(b.position)
    return float(np.degrees(np.arccos(np.clip(pa @ pb, -1.0, 1.0))))


def camera_turn(cam: Camera, level: Level, f: float, rng: np.random.Generator) -> np.ndarray:
    """The rotation [3, 3] about the object's centre a generated view's camera is off by: azimuth about world z,
    elevation about the camera's right axis, roll about its view axis."""
    yaw, pitch, roll = rng.uniform(-1, 1, 3) * level.pose_deg * f
    right, forward = cam.c2w[:3, 0], -cam.c2w[:3, 2]
    return (Rotation.from_rotvec(np.radians(yaw) * np.array([0.0, 0.0, 1.0]))
            * Rotation.from_rotvec(np.radians(pitch) * right)
            * Rotation.from_rotvec(np.radians(roll) * forward)).as_matrix()


def perturbed_camera(cam: Camera, level: Level, f: float, rng: np.random.Generator) -> Camera:
    """``cam`` turned about the object's centre (camera_turn) and moved along its view axis."""
    turn = camera_turn(cam, level, f, rng)
    c2w = cam.c2w.copy()
    c2w[:3, :3] = turn @ c2w[:3, :3]
    c2w[:3, 3] = turn @ c2w[:3, 3] * (1.0 + rng.uniform(-1, 1) * level.distance * f)
    return Camera(c2w, cam.fov_x, cam.width, cam.height)


def rendered_cameras(name: str, view_set: str, size: int = 128, n: int = 36, elevation: float = 20.0) -> list[Camera]:
    """The cameras the views of ``make_view_set(name, view_set, size)`` were rendered from: the nominal ones,
    except the generated-like sets' perturbed ones (the same draws as generated_like, without rendering)."""
    cameras = ring_cameras(n, elevation, DEFAULT_RADIUS, DEFAULT_FOV_X, SET_SIZE.get(view_set, size))
    if view_set not in LEVELS:
        return cameras
    seed = zlib.crc32(name.encode())
    return [cameras[0]] + [perturbed_camera(cam, LEVELS[view_set], angle_from(cam, cameras[0]) / 180.0,
                                            np.random.default_rng([seed, i]))
                           for i, cam in enumerate(cameras[1:], start=1)]


def smooth_warp(rgba: np.ndarray, amplitude_px: float, rng: np.random.Generator) -> np.ndarray:
    """``rgba`` resampled through a smooth random displacement whose largest offset is ``amplitude_px``."""
    h, w = rgba.shape[:2]
    coarse = rng.normal(size=(2, 4, 4))
    flow = np.stack([ndimage.zoom(c, (h / 4, w / 4), order=3)[:h, :w] for c in coarse])  # [2, H, W]
    flow *= amplitude_px / max(np.abs(flow).max(), 1e-9)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    premul = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
    out = np.stack([ndimage.map_coordinates(premul[..., c], [yy + flow[0], xx + flow[1]], order=1, mode="constant")
                    for c in range(4)], axis=-1)
    return unpremultiply(out)


def unpremultiply(premul: np.ndarray) -> np.ndarray:
    a = np.clip(premul[..., 3:], 0.0, 1.0)
    rgb = np.where(a > 1e-6, premul[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(rgb, 0, 1), a], axis=-1).astype(np.float32)


def generated_like(mesh, cameras: list[Camera], level: Level, seed: int) -> Views:
    """Views as a generator makes them (see the module docstring); ``cameras[0]`` is the exact input."""
    scale = cameras[0].width / 256.0
    views = []
    for i, cam in enumerate(cameras):
        rng = np.random.default_rng([seed, i])
        f = angle_from(cam, cameras[0]) / 180.0
        if i == 0:
            views.append(View(render_mesh(mesh, [cam], supersample=2)[0].rgba, cam, name="r_000", is_input=True))
            continue
        rgba = render_mesh(mesh, [perturbed_camera(cam, level, f, rng)], supersample=2)[0].rgba
        rgba = smooth_warp(rgba, level.warp_px * f * scale, rng)
        premul = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
        soft = level.mask_blur_px * scale
        premul = ndimage.gaussian_filter(premul, (soft, soft, 0))  # colour and alpha together: no fringes
        sigma = level.blur_px * f * scale
        if sigma > 0:
            premul[..., :3] = ndimage.gaussian_filter(premul[..., :3], (sigma, sigma, 0))
        rgba = unpremultiply(premul)
        rgba[..., :3] = np.clip(rgba[..., :3] * (1.0 + rng.uniform(-1, 1, 3) * level.gain * f), 0.0, 1.0)
        views.append(View(rgba, cam, name=f"r_{i:03d}", is_input=False))
    return Views(views)
