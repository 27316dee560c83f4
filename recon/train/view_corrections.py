"""How far each view is trusted, and what is learned per view so imperfect views do not carve the shape.

Generated views disagree with the input, more so the farther they are from it: a few degrees of pose, a few
pixels of shape, a colour cast. Three things absorb that instead of the geometry:

- a **confidence** per view: the input highest, generated views falling linearly with their angle from it;
  it weighs each view's rays in the losses and its vote when the hull is carved;
- a learned **pose correction** per view: a small rotation about the object's centre and a translation,
  applied to the view's rays (the errors of a generator's camera are turns about the object: azimuth,
  elevation, roll about an axis through it, plus a little distance), regularised to zero;
- a learned **affine colour** per view (a gain and an offset per channel, as NeRF-W's appearance embeddings
  give each photo its own exposure), applied to the rendered colour only, never to the field's.

The input view keeps its pose and colour: it fixes the frame and the colours the others are corrected to.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from img2mesh.data.views import Views


def view_angles(views: Views) -> np.ndarray | None:
    """Each view's angle (degrees) from the input view, seen from the object's centre (the origin); None when
    no view is marked as the input."""
    inputs = [v for v in views if v.is_input]
    if not inputs:
        return None
    ref = inputs[0].camera.position / np.linalg.norm(inputs[0].camera.position)
    dirs = np.stack([v.camera.position / np.linalg.norm(v.camera.position) for v in views])
    return np.degrees(np.arccos(np.clip(dirs @ ref, -1.0, 1.0)))


def view_confidence(views: Views, falloff: float, input_weight: float = 1.0) -> np.ndarray:
    """[V] weights: ``input_weight`` for input views, 1 - falloff * angle / 180 for the others (all 1 when no
    view is the input, e.g. a folder of renders)."""
    angles = view_angles(views)
    if angles is None:
        return np.ones(len(views))
    conf = 1.0 - float(falloff) * angles / 180.0
    return np.where([v.is_input for v in views], float(input_weight), conf)


def rotation_matrices(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation vectors [V, 3] -> matrices [V, 3, 3] (exact at zero, differentiable)."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # [V, 1, 1]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


class ViewCorrections(nn.Module):
    """Per-view pose and colour corrections, zero at the start; views where ``fixed`` is true never move."""

    def __init__(self, fixed: list[bool], pose: bool, appearance: bool):
        super().__init__()
        n = len(fixed)
        self.pose, self.appearance = bool(pose), bool(appearance)
        self.rotation = nn.Parameter(torch.zeros(n, 3))  # rotation vector about the origin, radians
        self.translation = nn.Parameter(torch.zeros(n, 3))  # world units
        self.log_gain = nn.Parameter(torch.zeros(n, 3))
        self.bias = nn.Parameter(torch.zeros(n, 3))
        self.register_buffer("free", (~torch.as_tensor(fixed, dtype=torch.bool)).float()[:, None])

    def pose_parameters(self) -> list[nn.Parameter]:
        return [self.rotation, self.translation] if self.pose else []

    def color_parameters(self) -> list[nn.Parameter]:
        return [self.log_gain, self.bias] if self.appearance else []

    def move_rays(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                  view: torch.Tensor, reach: float):
        """Rays of views ``view`` [n] through their corrected cameras; their bounds widen by how far the
        correction can move a point within ``reach`` of the origin, so the object stays inside them."""
        if not self.pose:
            return origins, dirs, near, far
        rot = rotation_matrices(self.rotation * self.free)[view]  # [n, 3, 3]
        shift = (self.translation * self.free)[view]  # [n, 3]
        origins = (rot @ origins[..., None])[..., 0] + shift
        dirs = (rot @ dirs[..., None])[..., 0]
        with torch.no_grad():
            pad = (self.translation * self.free).norm(dim=-1) + (self.rotation * self.free).norm(dim=-1) * reach
            pad = pad[view]
            hit = far > near
            near = torch.where(hit, (near - pad).clamp_min(0.0), near)
            far = torch.where(hit, far + pad, far)
        return origins, dirs, near, far

    def recolor(self, rgb: torch.Tensor, opacity: torch.Tensor, view: torch.Tensor, background: float) -> torch.Tensor:
        """The rendered colour [n, 3] (composited on ``background``) with each view's affine applied to the
        object's part only: the background stays the background."""
        if not self.appearance:
            return rgb
        gain = torch.exp(self.log_gain * self.free)[view]
        bias = (self.bias * self.free)[view]
        a = opacity[:, None]
        return (rgb - background * (1.0 - a)) * gain + bias * a + background * (1.0 - a)

    def penalty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(pose, colour) squared sizes, summed over views: the pull back to no correction."""
        pose = ((self.rotation * self.free) ** 2).sum() + ((self.translation * self.free) ** 2).sum()
        color = ((self.log_gain * self.free) ** 2).sum() + ((self.bias * self.free) ** 2).sum()
        return pose, color

    def per_view(self, names: list[str]) -> list[dict]:
        """Each view's learned correction (written to the run's recon/view_corrections.json)."""
        rot, shift = self.rotation.detach() * self.free, self.translation.detach() * self.free
        gain, bias = torch.exp(self.log_gain.detach() * self.free), self.bias.detach() * self.free
        return [{"view": name, "fixed": bool(self.free[i, 0] == 0),
                 "rotation_deg": [round(float(x), 4) for x in torch.rad2deg(rot[i])],
                 "translation": [round(float(x), 5) for x in shift[i]],
                 "gain": [round(float(x), 4) for x in gain[i]], "offset": [round(float(x), 4) for x in bias[i]]}
                for i, name in enumerate(names)]

    def summary(self) -> dict:
        """The learned corrections in readable units (kept in run.json)."""
        free = self.free[:, 0] > 0
        if not bool(free.any()):
            return {}
        deg = torch.rad2deg(self.rotation.detach()[free].norm(dim=-1))
        shift = self.translation.detach()[free].norm(dim=-1)
        gain = torch.exp(self.log_gain.detach()[free])
        return {"pose_deg_mean": round(float(deg.mean()), 3), "pose_deg_max": round(float(deg.max()), 3),
                "shift_max": round(float(shift.max()), 4),
                "gain_range": [round(float(gain.min()), 3), round(float(gain.max()), 3)]}
