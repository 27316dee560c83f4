"""NeuS (recon.method=neus: SDF grid; neus_mlp: the reference MLP): SDF + colour rendered with NeuS's alpha,
and the settings of both (`recon.neus`, `recon.neus_mlp`)."""
from dataclasses import dataclass, field

from img2mesh.data.errors import InputError
from img2mesh.data.settings import check_fields, choice, number

from ..fields.encoding import tcnn_module
from ..fields.neus import GridNeuSField, MLPNeuSField
from ..render.volume import render_neus
from ..train import losses as L
from ..train.schedules import cos_anneal_ratio
from .base import GridMethod, Method, check_coarse_to_fine, mesh_level_set


@dataclass
class NeuSConfig:
    """NeuS with its SDF on a dense vertex grid (`recon.method=neus`): the NeuS maths and colour network of
    the reference, without an 8 x 256 MLP per sample; the SDF grid starts from the carved hull."""

    resolution: int = number(128, low=4)  # SDF grid vertices per side of the box
    # >0: start at this resolution (concavities carve at the coarse scale) ...
    coarse_resolution: int = number(48, low=0)
    upsample_at: float = number(0.5, low=0, high=1)  # ... and upsample to `resolution` at this fraction of the steps
    color_resolution: int = number(64, low=2)  # colour feature grid per side (colour varies slower than shape needs)
    # numerical (central differences, smooth normals) | analytic (trilinear's own)
    gradient: str = choice("numerical", ("numerical", "analytic"))
    # blank start: a sphere of this radius (share of the box's half-diagonal)
    init_radius: float = number(0.5, above=0)
    feature_dim: int = number(8, low=1)  # colour-grid channels fed to the colour network
    color_hidden: int = number(64, low=1)
    color_layers: int = number(2, low=1)
    view_frequencies: int = number(4, low=0)  # PE of the view direction fed to the colour net
    # Colour sees the view direction (the reference NeuS does): neutral on Lambertian renders, better geometry
    # under highlights, which a view-independent colour can only fit by bending the surface (experiments/README.md,
    # issue-20 table).
    view_dependent: bool = True
    variance_init: float = 0.5  # inv_s = exp(10 * v): NeuS's learned sharpness
    lr: float = number(0.01, low=0)  # grids take large steps (the reference MLP's 5e-4 would need 10x the steps)
    geometry_lr_scale: float = number(0.06, low=0)  # SDF grid lr = lr * this: world units per step at 256 px views
    # Views smaller than this step proportionally less, never under half: the rate was tuned on 128 and on 256 px
    # views (experiments/README.md); 0: the same rate at any size.
    geometry_lr_view_size: int = number(256, low=0)
    n_samples: int = number(32, low=1)  # uniform samples inside the ray's bounds
    n_importance: int = number(16, low=0)  # importance samples, drawn in up_sample_steps rounds
    up_sample_steps: int = number(2, low=0)
    # importance round i weights samples with inv_s = 64 * growth^i (NeuS: 2)
    up_sample_growth: float = number(2.0, above=0)
    cos_anneal_steps: int = number(0, low=0)  # NeuS cos anneal (0 = off): the hull start needs no warm-up
    lambda_eikonal: float = number(0.1, low=0)
    # squared Laplacian of the SDF near the surface: no voxel-scale bumps
    lambda_curvature: float = number(0.01, low=0)
    # Area of the zero level (mean-curvature flow): unseen surfaces shrink towards the smallest the
    # silhouettes allow instead of the hull's cone.
    lambda_area: float = number(0.01, low=0)

    def check(self, key: str) -> None:
        """Refuse a bad value of this section (``key``: its dotted name) with one line (InputError)."""
        check_fields(self, key)
        check_coarse_to_fine(self, key)


@dataclass
class NeuSMLPConfig:
    """The reference NeuS (`recon.method=neus_mlp`, `-c reference`): 8 x 256 SDF MLP on a frequency or
    hash-grid encoding with geometric init, 4 x 256 colour MLP; docs/reference.md section 5."""

    # frequency (reference, 6 octaves) | hashgrid (instant-NGP)
    encoding: str = choice("frequency", ("frequency", "hashgrid"))
    # hashgrid on CUDA: auto (tiny-cuda-nn when it imports) | on (required) | off
    tcnn: str = choice("auto", ("auto", "on", "off"))
    n_frequencies: int = number(6, low=0)
    hidden: int = number(256, low=1)
    layers: int = number(8, low=2)
    skip: list[int] = field(default_factory=lambda: [4])  # input re-injected before this layer
    init_radius: float = number(0.5, above=0)  # geometric init: sdf(x) = |x| - r at step 0 (bounds-normalised units)
    # Hash grid (instant-NGP / instant-NSR sizes): levels x features, 2^log2_table entries per level.
    hash_levels: int = number(16, low=1)
    hash_features: int = number(2, low=1)
    hash_log2_table: int = number(19, low=1, high=30)
    hash_base_resolution: int = number(16, low=1)
    hash_finest_resolution: int = number(2048, low=1)
    feature_dim: int = number(256, low=1)  # SDF net -> colour net feature
    color_hidden: int = number(256, low=1)
    color_layers: int = number(4, low=1)
    view_frequencies: int = number(4, low=0)
    view_dependent: bool = True
    variance_init: float = 0.3
    lr: float = number(5e-4, low=0)
    geometry_lr_scale: float = number(1.0, low=0)  # SDF network lr = lr * this
    geometry_lr_view_size: int = number(0, low=0)  # as in NeuSConfig
    n_samples: int = number(64, low=1)
    n_importance: int = number(64, low=0)  # in 4 rounds of 16
    up_sample_steps: int = number(4, low=0)
    up_sample_growth: float = number(2.0, above=0)
    cos_anneal_steps: int = number(200, low=0)
    lambda_eikonal: float = number(0.1, low=0)

    def check(self, key: str) -> None:
        """Refuse a bad value of this section (``key``: its dotted name) with one line (InputError)."""
        check_fields(self, key)
        bad = [i for i in self.skip if not 0 < i < self.layers]
        if bad:
            raise InputError(f"{key}.skip={self.skip!r}: each layer index must be from 1 to {self.layers - 1} "
                             f"({key}.layers - 1)")


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


class GridNeuS(GridMethod, NeuS):
    """The SDF on a dense grid, started from the start's SDF, coarse-to-fine, with curvature and area priors."""

    section, config = "neus", NeuSConfig
    losses = ("eikonal", "curvature", "area")
    geometry_grid = "sdf_grid"

    def make(self, settings, box, init, device):
        return GridNeuSField(settings, box, self.first_resolution(settings), sdf_init=init)

    def initial_values(self, settings, start, box):
        return None if start.initial_sdf is None else self.sampled_to_first_grid(settings, start, start.initial_sdf)

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

    section, config = "neus_mlp", NeuSMLPConfig

    def make(self, settings, box, init, device):
        return MLPNeuSField(settings, box, use_tcnn=use_tcnn(settings.tcnn, settings.encoding, device), device=device)

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
