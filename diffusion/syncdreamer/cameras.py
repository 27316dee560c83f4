"""SyncDreamer's 16 fixed target cameras, in the original's conventions and in img2mesh's world frame.

The original renders its training views from camera positions (cos az cos el, sin az cos el, sin el) * 1.5
in Blender's z-up world, each camera looking at the origin with the world's z as up; its poses are those
cameras' world-to-camera matrices in the OpenCV convention (x right, y down, looking along +z). img2mesh's
world frame is the same z-up frame with azimuth from +x towards +y (data/cameras.py), so target view k sits
at the input's azimuth + 22.5 k degrees: the azimuth grows counter-clockwise seen from above, and view 0 is
at the input's azimuth (elevation 30, radius 1.5, fx = fy = 280 at 256 px, principal point at the centre).
"""
from __future__ import annotations

import numpy as np
import torch

from img2mesh.data.cameras import Camera, camera_layout

NUM_VIEWS = 16
FOCAL_256 = 280.0  # fx = fy at 256 px
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def target_azimuths(n: int = NUM_VIEWS) -> torch.Tensor:
    """[n] float32 radians relative to the input view, wrapped to [-pi, pi) in float32 as the original does
    (so view 8 of 16 is -pi, not +pi)."""
    azimuths = (np.arange(n) / n * np.pi * 2).astype(np.float32)
    return torch.from_numpy(((azimuths + np.pi) % (np.pi * 2) - np.pi).astype(np.float32))


def target_intrinsics(image_size: int, n: int = NUM_VIEWS) -> torch.Tensor:
    """[n, 3, 3] float32: K = [[280, 0, 128], [0, 280, 128], [0, 0, 1]] at 256 px, scaled with the image."""
    ratio = image_size / 256
    k = np.diag([ratio, ratio, 1.0]) @ np.array([[FOCAL_256, 0.0, 128.0], [0.0, FOCAL_256, 128.0], [0.0, 0.0, 1.0]])
    return torch.from_numpy(k.astype(np.float32)).unsqueeze(0).repeat(n, 1, 1)


def target_cameras(image_size: int, input_azimuth: float = 0.0) -> list[Camera]:
    """The 16 target views as img2mesh cameras (OpenGL camera-to-world): view k at ``input_azimuth`` + 22.5 k
    degrees, elevation 30, radius 1.5, the original's field of view, ``image_size`` px."""
    return camera_layout("syncdreamer16", size=image_size, start_azimuth=input_azimuth)


def target_poses(n: int = NUM_VIEWS) -> torch.Tensor:
    """[n, 3, 4] float32 world-to-camera OpenCV poses of the targets for an input at azimuth 0 (the layout of
    the original's ``poses`` buffer, e.g. for building a test model)."""
    poses = []
    for cam in camera_layout("syncdreamer16", start_azimuth=0.0)[:n]:
        w2c = np.linalg.inv(cam.c2w)
        poses.append(np.concatenate([OPENGL_TO_OPENCV @ w2c[:3, :3], (OPENGL_TO_OPENCV @ w2c[:3, 3])[:, None]], 1))
    return torch.from_numpy(np.stack(poses).astype(np.float32))

