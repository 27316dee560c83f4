"""Dense voxel grids with trilinear interpolation (and its analytic spatial gradient).

A grid stores C channels at R^3 vertices spanning an axis-aligned box (vertex-aligned: vertex 0 sits on
``aabb_min``, vertex R-1 on ``aabb_max``). Values live channel-last ([R^3, C]) so the 8 corners of a point are
one gather; on CPU this is ~2x faster than ``F.grid_sample`` for C > 1 and gives the gradient for free.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..mesh.meshing import grid_points

# Corner offsets (i, j, k) in {0, 1}^3, in the order the flat index offsets below use.
_CORNERS = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]


def _gather(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values [M, C] at integer idx [...] -> [..., C]. index_select's backward (index_add_) is deterministic
    on CPU, unlike advanced indexing's (a threaded scatter-add), which keeps seeded runs bit-identical.
    One channel gathers from the flat view: the same numbers, several times faster both ways on CPU than
    gathering rows of width 1 (experiments/README.md, "Where the CPU preset's NeuS spends its time")."""
    if values.shape[1] == 1:
        return _gather_one_channel(values, idx)[..., None]
    return values.index_select(0, idx.reshape(-1)).reshape(*idx.shape, values.shape[1])


def _gather_one_channel(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values [M, 1] at integer idx [...] -> [...], from the flat view (see :func:`_gather`)."""
    return values.view(-1).index_select(0, idx.reshape(-1)).reshape(idx.shape)


def _gather_channel_first(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values [M, C] at integer idx [...] -> [C, ...], through the transposed view: on CPU its backward (an
    index_add along the rows of a [C, M] gradient) is several times faster than adding rows of width C, with
    the same numbers (experiments/README.md, "Where the CPU preset's NeuS spends its time")."""
    return values.t().index_select(1, idx.reshape(-1)).reshape(values.shape[1], *idx.shape)


def _corner_weights(f: torch.Tensor) -> torch.Tensor:
    """Trilinear weights [N, 8] of the corners in ``_CORNERS`` order from fractional offsets f [N, 3]."""
    wx, wy, wz = (torch.stack([1 - f[:, k], f[:, k]], dim=-1) for k in range(3))  # [N, 2] each
    return (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(-1, 8)


def _cell(u: torch.Tensor, r: int, lo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index [N] of each point's lower cell corner (clamped to [lo, r - 2 - lo]) and its offsets f [N, 3]."""
    base = u.detach().floor().clamp(lo, r - 2 - lo)
    i = base.long()
    return (i[:, 0] * r + i[:, 1]) * r + i[:, 2], u - base


def trilinear(values: torch.Tensor, resolution: int, u: torch.Tensor, with_grad: bool = False):
    """Interpolate a grid at continuous voxel coordinates.

    values: [R^3, C] (x-major: index = (i * R + j) * R + k); u: [N, 3] voxel coordinates in [0, R - 1]
    (clamped). Returns [N, C] and, if ``with_grad``, d/du [N, C, 3] (per voxel; divide by the voxel size
    for world units).
    """
    r = resolution
    n = u.shape[0]
    assert values.dim() == 2 and values.shape[0] == r**3, f"values must be [R^3, C], got {tuple(values.shape)}"
    assert u.shape == (n, 3), f"u must be [N, 3], got {tuple(u.shape)}"
    flat, f = _cell(u.clamp(0.0, r - 1.0), r, 0)
    offsets = torch.tensor([(a * r + b) * r + c for a, b, c in _CORNERS], device=u.device)
    corner_values = _gather_channel_first(values, flat[:, None] + offsets)  # [C, N, 8]
    w = _corner_weights(f)  # [N, 8]
    out = (corner_values * w).sum(dim=-1).t()  # [N, C]
    if not with_grad:
        return out
    c = torch.tensor(_CORNERS, dtype=u.dtype, device=u.device)  # [8, 3]
    lerp = c * f[:, None, :] + (1 - c) * (1 - f[:, None, :])  # [N, 8, 3] per-axis weights
    sign = 2 * c - 1  # d lerp / d f per axis: +1 for the upper corner, -1 for the lower
    grads = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        dw = sign[:, axis] * lerp[..., others[0]] * lerp[..., others[1]]  # [N, 8]
        grads.append((corner_values * dw).sum(dim=-1).t())  # [N, C]
    return out, torch.stack(grads, dim=-1)  # [N, C], [N, C, 3]


def trilinear_central_differences(values: torch.Tensor, resolution: int, u: torch.Tensor):
    """A one-channel grid [R^3, 1] at u [N, 3] and its central differences over +-1 voxel [N, 3] (per voxel).

    The seven lookups (centre and +-1 voxel per axis) share the same fractional offsets, so the weights
    are computed once and the corners gathered in one go. Points are kept one voxel inside the grid.
    """
    r = resolution
    assert values.dim() == 2 and values.shape == (r**3, 1), f"values must be [R^3, 1], got {tuple(values.shape)}"
    flat, f = _cell(u.clamp(1.0, r - 2.0), r, 1)
    corners = torch.tensor([(a * r + b) * r + c for a, b, c in _CORNERS], device=u.device)  # [8]
    shifts = torch.tensor([0, r * r, r, 1, -r * r, -r, -1], device=u.device)  # centre, +x, +y, +z, -x, -y, -z
    idx = flat[:, None, None] + shifts[None, :, None] + corners[None, None, :]  # [N, 7, 8]
    v = _gather_one_channel(values, idx)  # [N, 7, 8]
    s = (v * _corner_weights(f)[:, None, :]).sum(dim=-1)  # [N, 7]
    return s[:, 0], 0.5 * (s[:, 1:4] - s[:, 4:7])


def surface_area(occ: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Area (world units^2) of an occupancy grid's surface: its isotropic total variation.

    occ [n, 4]: occupancy at the n grid vertices where it varies and at their +x, +y, +z neighbours (a
    vertex with all four equal adds nothing). Minimising it is mean-curvature flow: where no view constrains
    the surface (an underside no camera of a ring sees), it moves towards the smallest surface the
    silhouettes allow instead of keeping the carved hull's cone or wedge.
    """
    assert occ.dim() == 2 and occ.shape[1] == 4, f"occ must be [n, 4], got {tuple(occ.shape)}"
    g = occ[:, 1:] - occ[:, :1]
    return torch.sqrt((g * g).sum(dim=-1) + 1e-12).sum() * voxel_size**2


class DenseGrid(nn.Module):
    """C channels on an R^3 vertex grid over [aabb_min, aabb_max]; ``forward(x world [N, 3]) -> [N, C]``."""

    def __init__(self, resolution: int, channels: int, aabb_min, aabb_max, init: torch.Tensor | float = 0.0,
                 trainable: bool = True):
        super().__init__()
        self.resolution, self.channels = int(resolution), int(channels)
        self.register_buffer("aabb_min", torch.as_tensor(aabb_min, dtype=torch.float32).reshape(3))
        self.register_buffer("aabb_max", torch.as_tensor(aabb_max, dtype=torch.float32).reshape(3))
        values = torch.empty(self.resolution**3, self.channels)
        if isinstance(init, torch.Tensor):
            values.copy_(init.reshape(self.resolution**3, self.channels))
        else:
            values.fill_(float(init))
        if trainable:
            self.values = nn.Parameter(values)
        else:  # a fixed field (e.g. the hull's SDF used as a bound): saved with the state, never optimised
            self.register_buffer("values", values)

    @property
    def voxel_size(self) -> torch.Tensor:  # [3] world units
        return (self.aabb_max - self.aabb_min) / (self.resolution - 1)

    def vertex_positions(self) -> torch.Tensor:
        """World positions of all vertices, [R^3, 3], in the grid's flat order."""
        return grid_points(self.aabb_min.cpu(), self.aabb_max.cpu(), self.resolution).to(self.aabb_min.device)

    def to_voxel(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.aabb_min) / self.voxel_size

    def forward(self, x: torch.Tensor, with_grad: bool = False):
        """Values [N, C] at world points x [N, 3]; with ``with_grad`` also d/dx [N, C, 3] in world units."""
        if not with_grad and self.channels == 1 and not (torch.is_grad_enabled() and
                                                          (self.values.requires_grad or x.requires_grad)):
            return self._sample_without_graph(x)
        if not with_grad:
            return trilinear(self.values, self.resolution, self.to_voxel(x))
        out, grad = trilinear(self.values, self.resolution, self.to_voxel(x), with_grad=True)
        return out, grad / self.voxel_size

    def _sample_without_graph(self, x: torch.Tensor) -> torch.Tensor:
        """One channel, nothing to differentiate (sampling, visibility, meshing): ``F.grid_sample``'s single
        kernel, several times faster on CPU than the gathers (experiments/README.md); the same interpolant up to
        float rounding of the coordinates. Outside the box it clamps to the border, as :func:`trilinear` does."""
        r = self.resolution
        u = self.to_voxel(x).clamp(0.0, r - 1.0) * (2.0 / (r - 1)) - 1.0
        vol = self.values.reshape(1, 1, r, r, r)  # grid_sample's (x, y, z) index (W, H, D) = our (k, j, i)
        out = F.grid_sample(vol, u.flip(-1).reshape(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.reshape(-1, 1)

    def value_and_central_differences(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-channel grids: value [N] and central-difference gradient [N, 3] in world units."""
        value, diff = trilinear_central_differences(self.values, self.resolution, self.to_voxel(x))
        return value, diff / self.voxel_size

    def zero_level_area(self, voxel: float) -> torch.Tensor | None:
        """Area (world units^2) of channel 0's zero level as an SDF, through the occupancy sigmoid(-sdf /
        ``voxel``) over its band (:func:`surface_area`), with gradients into the grid;
        None when the grid has no surface."""
        occ = self.band_occupancy(lambda v: torch.sigmoid(-v / voxel))
        return None if occ is None else surface_area(occ, voxel)

    def band_occupancy(self, occupancy) -> torch.Tensor | None:
        """Occupancy [m, 4] at every vertex of the surface's band and at its +x, +y, +z neighbours, with
        gradients into the grid (None when there is no surface).

        ``occupancy``: raw one-channel values [...] -> occupancy in [0, 1] [...] (differentiable). The band
        is every vertex whose occupancy differs by more than 0.01 from its +x/+y/+z neighbours (found without
        gradients). All of it, not a sample: with Adam every sampled vertex takes a full step, and sampling
        roughened a sphere where the whole band shrinks it smoothly.
        """
        r = self.resolution
        with torch.no_grad():
            o = occupancy(self.values[:, 0]).reshape(r, r, r)
            core = o[:-1, :-1, :-1]
            change = ((o[1:, :-1, :-1] - core).abs() + (o[:-1, 1:, :-1] - core).abs()
                      + (o[:-1, :-1, 1:] - core).abs())
            ijk = torch.nonzero(change > 1e-2)  # |sdf| < ~4 voxels for the NeuS occupancy
        if len(ijk) == 0:
            return None
        flat = (ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]
        neighbours = torch.tensor([0, r * r, r, 1], device=flat.device)  # self, +x, +y, +z
        return occupancy(self.gather(flat[:, None] + neighbours)[..., 0])

    def gather(self, flat: torch.Tensor) -> torch.Tensor:
        """Values [..., C] at flat vertex indices."""
        return _gather(self.values, flat)

    def laplacian_loss(self, points: torch.Tensor) -> torch.Tensor:
        """One-channel grids: mean squared discrete Laplacian (per voxel) at the vertices nearest ``points``
        [N, 3] (e.g. surface samples): a smoothness prior that leaves planes and spheres alone-ish."""
        r = self.resolution
        i = self.to_voxel(points.detach()).round().long().clamp(1, r - 2)  # [N, 3]
        flat = (i[:, 0] * r + i[:, 1]) * r + i[:, 2]
        offsets = torch.tensor([r * r, -r * r, r, -r, 1, -1, 0], device=points.device)
        v = self.gather(flat[:, None] + offsets)[..., 0]  # [N, 7]
        lap = v[:, :6].sum(dim=1) - 6 * v[:, 6]
        return (lap / self.voxel_size.mean()).pow(2).mean()

    def volume(self) -> torch.Tensor:
        """The values as [C, R, R, R] (x, y, z order)."""
        r = self.resolution
        return self.values.reshape(r, r, r, self.channels).permute(3, 0, 1, 2)

    @torch.no_grad()
    def resample(self, resolution: int) -> None:
        """Coarse-to-fine: re-grid the same box at ``resolution`` by trilinear upsampling (values replaced)."""
        vol = F.interpolate(self.volume()[None], size=(resolution,) * 3, mode="trilinear", align_corners=True)[0]
        self.resolution = int(resolution)
        values = vol.permute(1, 2, 3, 0).reshape(-1, self.channels).contiguous()
        if isinstance(self.values, nn.Parameter):
            self.values = nn.Parameter(values)
        else:
            self.values = values


def grid_resolutions(field: nn.Module) -> dict[str, int]:
    """Each grid's resolution by module name (saved with checkpoints and field files)."""
    return {name: m.resolution for name, m in field.named_modules() if isinstance(m, DenseGrid)}


def match_grids(field: nn.Module, resolutions: dict[str, int]) -> None:
    """Re-grid the field's grids to saved resolutions (coarse-to-fine runs) before loading its state."""
    modules = dict(field.named_modules())
    for name, res in resolutions.items():
        if name in modules and modules[name].resolution != res:
            modules[name].resample(res)
