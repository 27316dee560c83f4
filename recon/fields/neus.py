"""The NeuS field: an SDF, a colour network and NeuS's learned variance, with two SDF parameterisations.

- :class:`MLPNeuSField` (the reference): the 8 x 256 SDF MLP on a frequency or hash-grid encoding of the
  point, normalised by the object's centre and radius.
- :class:`GridNeuSField` (the product default): the SDF on a dense vertex grid over the object's box,
  started from the carved hull's signed distance; colour features on a second, coarser grid.
Both feed the same colour network, variance and renderer: same NeuS maths, different parameterisation.
"""
from __future__ import annotations

import torch
from torch import nn

from .encoding import FrequencyEncoding, make_hash_grid
from .box import FieldBox
from .grid import DenseGrid
from .neus_mlp import ColorNetwork, SDFNetwork, SingleVariance


def neus_section_alpha(sdf_start: torch.Tensor, sdf_end: torch.Tensor, inv_s: torch.Tensor | float) -> torch.Tensor:
    """NeuS's discrete opacity of a ray section from the SDF at its two ends (any matching shapes): the share of
    the logistic CDF Phi(s) = sigmoid(inv_s * s) lost across it, (Phi(start) - Phi(end)) / Phi(start), in
    [0, 1]. The one place NeuS's alpha is computed: rendering, importance sampling, visibility and the
    occupancy grid all call it."""
    start_cdf = torch.sigmoid(sdf_start * inv_s)
    end_cdf = torch.sigmoid(sdf_end * inv_s)
    return ((start_cdf - end_cdf + 1e-5) / (start_cdf + 1e-5)).clamp(0.0, 1.0)


class _UnitCube(nn.Module):
    """Maps normalised points in [-1, 1]^3 to [0, 1]^3 for a hash grid."""

    def __init__(self, encoding: nn.Module):
        super().__init__()
        self.encoding, self.out_dim = encoding, encoding.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoding(0.5 * (x + 1.0))


class NeuSField(nn.Module):
    """SDF (world units, negative inside) + colour + NeuS's variance; the SDF's parameterisation is the
    subclass's (:class:`GridNeuSField`, :class:`MLPNeuSField`).

    center [3] and radius: a sphere enclosing the object (the colour net's input normalisation).
    """

    def __init__(self, cfg, box: FieldBox):
        super().__init__()
        self.register_buffer("center", box.center.clone())
        self.register_buffer("radius", torch.tensor(box.radius))
        self.box = box
        self.bound = box.bound_grid()
        self.bound_margin = box.bound_margin
        self.view_dependent = cfg.view_dependent
        self.color_net = ColorNetwork(cfg.feature_dim, cfg.color_hidden, cfg.color_layers, cfg.view_frequencies)
        self.variance = SingleVariance(cfg.variance_init)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.radius

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance [N] (world units) at world points [N, 3]."""
        raise NotImplementedError

    def geometry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """sdf [N], gradient d sdf / dx [N, 3] and, when it comes for free (MLP), the colour feature [N, F]
        (else None: ask :meth:`feature` for just the points that need colour) at world points [N, 3]."""
        raise NotImplementedError

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        """Colour feature [N, F] at world points [N, 3]."""
        raise NotImplementedError

    def color(self, x, dirs, normal, feature) -> torch.Tensor:
        """rgb [N, 3]; with ``view_dependent`` off the view direction input is zeroed (Lambertian scenes)."""
        if not self.view_dependent:
            dirs = torch.zeros_like(dirs)
        return self.color_net(self.normalise(x), dirs, normal, feature)

    def inv_s(self) -> torch.Tensor:
        return self.variance()

    def opacity(self, x: torch.Tensor, cell: float) -> torch.Tensor:
        """Opacity [N] of a ``cell``-long section through points [N, 3] facing the surface (the occupancy
        grid's measure); inside the object a ray must still reach through, so it counts as opaque."""
        sdf = self.sdf(x)
        alpha = neus_section_alpha(sdf + 0.5 * cell, sdf - 0.5 * cell, self.inv_s())
        return torch.where(sdf < 0, torch.ones_like(sdf), alpha)

    def aabb(self) -> tuple[list[float], list[float]]:
        """The box that holds the object."""
        return self.box.aabb_min.tolist(), self.box.aabb_max.tolist()

    def vertex_color(self, x: torch.Tensor) -> torch.Tensor:
        """Colour [N, 3] of surface points [N, 3] seen head-on (view direction = -normal)."""
        _, grad, feature = self.geometry(x)
        feature = self.feature(x) if feature is None else feature
        normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return self.color(x, -normal, normal, feature)

    def mesh_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """SDF for meshing: the field intersected with the hull dilated by ``bound_margin``, where the object
        must lie (without the margin the intersection would follow the hull's voxel staircase, inside the truth)."""
        sdf = self.sdf(x)
        if self.bound is not None:
            sdf = torch.maximum(sdf, self.bound(x)[:, 0] - self.bound_margin)
        return sdf


class GridNeuSField(NeuSField):
    """The SDF on a dense ``resolution``^3 vertex grid over the box (from ``sdf_init`` [R^3], e.g. the start's
    signed distance, or a sphere), normals by central differences or the trilinear interpolant's own gradient (no
    double backward for the eikonal loss); colour features on a second, coarser grid."""

    def __init__(self, cfg, box: FieldBox, resolution: int, sdf_init: torch.Tensor | None = None):
        super().__init__(cfg, box)
        self.sdf_grid = DenseGrid(resolution, 1, box.aabb_min, box.aabb_max, 0.0)
        if sdf_init is None:  # a sphere of init_radius (normalised units) around the centre
            pos = self.sdf_grid.vertex_positions()
            sdf_init = (pos - self.center).norm(dim=-1) - cfg.init_radius * float(self.radius)
        with torch.no_grad():
            self.sdf_grid.values.copy_(sdf_init.reshape(-1, 1))
        self.feature_grid = DenseGrid(cfg.color_resolution, cfg.feature_dim, box.aabb_min, box.aabb_max, 0.0)
        with torch.no_grad():
            self.feature_grid.values.normal_(0.0, 0.1)
        self.numerical_gradient = cfg.gradient == "numerical"
        if cfg.gradient not in ("numerical", "analytic"):
            raise ValueError(f"unknown recon.neus.gradient {cfg.gradient!r}: use numerical or analytic")

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_grid(x)[:, 0]

    def geometry(self, x: torch.Tensor):
        if self.numerical_gradient:  # central differences over +-1 voxel: smooth across voxel faces
            return self.sdf_grid.value_and_central_differences(x) + (None,)
        sdf, grad = self.sdf_grid(x, with_grad=True)  # [N, 1], [N, 1, 3]
        return sdf[:, 0], grad[:, 0], None

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_grid(x)

    def surface_area(self) -> torch.Tensor:
        """Area of the SDF's zero level (occupancy sigmoid(-sdf / voxel)), world units^2."""
        area = self.sdf_grid.zero_level_area(float(self.sdf_grid.voxel_size.mean()))
        return self.sdf_grid.values.sum() * 0.0 if area is None else area

    def curvature_loss(self, points: torch.Tensor) -> torch.Tensor:
        """The SDF grid's squared Laplacian at the vertices nearest ``points`` [N, 3]."""
        return self.sdf_grid.laplacian_loss(points)


class MLPNeuSField(NeuSField):
    """The reference SDF: an MLP on a frequency or hash-grid encoding of the normalised point, geometric init
    to a sphere; normals by autograd (double backward for the eikonal loss). ``use_tcnn``: the hash grid from
    tiny-cuda-nn (CUDA only; a field reloads with the same kind it was trained with)."""

    def __init__(self, cfg, box: FieldBox, use_tcnn: bool = False, device="cpu"):
        super().__init__(cfg, box)
        if cfg.encoding == "frequency":
            enc, keeps = FrequencyEncoding(3, cfg.n_frequencies), True
        elif cfg.encoding == "hashgrid":
            enc = _UnitCube(make_hash_grid(cfg.hash_levels, cfg.hash_features, cfg.hash_log2_table,
                                           cfg.hash_base_resolution, cfg.hash_finest_resolution, device, use_tcnn))
            keeps = False
        else:
            raise ValueError(f"unknown recon.neus_mlp.encoding {cfg.encoding!r}: use frequency or hashgrid")
        self.sdf_net = SDFNetwork(enc, keeps, cfg.hidden, cfg.layers, tuple(cfg.skip), cfg.feature_dim,
                                  cfg.init_radius)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_net(self.normalise(x))[0] * self.radius

    def geometry(self, x: torch.Tensor):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sdf_n, feature = self.sdf_net(self.normalise(x))
            sdf = sdf_n * self.radius
            grad = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=torch.is_grad_enabled(),
                                       retain_graph=True)[0]
        return sdf, grad, feature

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_net(self.normalise(x))[1]
