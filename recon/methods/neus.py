"""NeuS (recon.method=neus: SDF grid; neus_mlp: the reference MLP): SDF + colour rendered with NeuS's alpha."""
from __future__ import annotations

import torch

from .. import losses as L
from ..fields.neus import GridNeuSField, MLPNeuSField
from ..fields.encoding import tcnn_module
from ..schedules import cos_anneal_ratio
from ..volume_render import render_neus
from .base import Method, mesh_level_set


class NeuS(Method):
    """What both NeuS parameterisations share: the renderer, the eikonal loss, the sharpness to watch, meshing
    at the SDF's zero level."""

    losses = ("eikonal",)

    def render(self, cfg, field, rays, step, generator):
        s = self.settings(cfg)
        return render_neus(field, rays, s.n_samples, s.n_importance, s.up_sample_steps,
                           cos_anneal=cos_anneal_ratio(step, s.cos_anneal_steps), generator=generator,
                           background=cfg.background, up_sample_growth=s.up_sample_growth)

    def extra_losses(self, cfg, field, out, weight):
        terms = {}
        if weight("eikonal") and out.gradients is not None:
            terms["eikonal"] = weight("eikonal") * L.eikonal_loss(out.gradients)
        return terms

    def live_stats(self, field):
        return {"inv_s": float(field.inv_s().detach())}

    def surface_width(self, field):
        return 1.0 / float(field.inv_s().detach())

    def mesh(self, field, mesh_cfg):
        return mesh_level_set(field.mesh_sdf, field, mesh_cfg.level(0.0), "below", mesh_cfg)


class GridNeuS(NeuS):
    """The SDF on a dense grid, started from the start's SDF, coarse-to-fine, with curvature and area priors."""

    section = "neus"
    losses = ("eikonal", "curvature", "area")
    geometry_grid = "sdf_grid"

    def make(self, cfg, box, init, device):
        return GridNeuSField(cfg.neus, box, sdf_init=init)

    def initial_values(self, cfg, start, box):
        return None if start.sdf is None else self.sampled_to_first_grid(cfg, start, start.sdf)

    def extra_losses(self, cfg, field, out, weight):
        terms = super().extra_losses(cfg, field, out, weight)
        if weight("curvature") and out.surface_points is not None:
            terms["curvature"] = weight("curvature") * field.curvature_loss(out.surface_points)
        if weight("area"):
            terms["area"] = weight("area") * field.surface_area()
        return terms

    def geometry_parameters(self, field):
        return [field.sdf_grid.values]


class MLPNeuS(NeuS):
    """The reference: an SDF MLP with geometric init (a sphere), no hull start."""

    section = "neus_mlp"

    def make(self, cfg, box, init, device):
        return MLPNeuSField(cfg.neus_mlp, box, use_tcnn=use_tcnn(cfg.neus_mlp.tcnn, cfg.neus_mlp.encoding, device),
                            device=device)

    def geometry_parameters(self, field):
        return list(field.sdf_net.parameters())


def use_tcnn(mode: str, encoding: str, device) -> bool:
    """tiny-cuda-nn's fused hash grid: auto = when the encoding is a hash grid on CUDA and tinycudann imports."""
    mode = str(mode).strip().lower()
    if mode not in ("auto", "on", "off"):
        from img2mesh.data.errors import InputError

        raise InputError(f"recon.neus_mlp.tcnn={mode!r}: use auto, on or off")
    if mode == "off" or encoding != "hashgrid":
        return False
    available = tcnn_module(device) is not None
    if mode == "on" and not available:
        from img2mesh.data.errors import UnavailableError

        raise UnavailableError("recon.neus_mlp.tcnn=on needs CUDA and the tinycudann package; use "
                               "recon.neus_mlp.tcnn=auto")
    return available
