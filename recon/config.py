"""Configuration of the recon stage (the `recon:` section of configs/*.yaml).

The defaults are the product's: a dense-grid NeuS started from the carved hull (`configs/reference.yaml` is
the reference NeuS, `configs/cpu.yaml` the 2-core preset; each holds only what differs from these). One
section per method (`recon.neus`, `recon.neus_mlp`, `recon.voxel`) with the same names for the same ideas:
`resolution`, `coarse_resolution` / `upsample_at` (coarse-to-fine), `color_resolution`, `lr` and
`geometry_lr_scale`, and the weights of the losses only that method has (`lambda_*`). Measured effects of
the values are in experiments/README.md.
"""
import dataclasses
from dataclasses import dataclass, field

from img2mesh.data.errors import InputError
from img2mesh.data.settings import check_fields, choice, number


class MethodNames:
    """The names ``recon.method`` takes: a live view of the METHODS dict (recon/methods/__init__.py), so a
    method registered there is a valid choice at once."""

    def __contains__(self, name) -> bool:
        from .methods import METHODS

        return name in METHODS

    def __iter__(self):
        from .methods import METHODS

        return iter(list(METHODS))


@dataclass
class InitConfig:
    """The start every method shares (recon/start.py): the carved hull, the box the field lives in, and the
    hull-initialised shape with the priors for what no camera sees."""

    hull_resolution: int = number(128, low=8)  # carving grid per side
    # Robust carving (recon/hull.py): the share of the views' confidence that may see a point as background
    # without carving it, and how many pixels each generated view's mask is grown first. auto: both 0 when the
    # masks agree (exact renders), else set from how far they disagree (recon/carving.py).
    hull_tolerance: float | str = number("auto", low=0, below=1, also=("auto",))
    hull_tolerance_px: float | str = number("auto", low=0, also=("auto",))
    # hull: sample only inside the carved hull (fast, tight) | sphere: radius sphere_radius
    bounds: str = choice("hull", ("hull", "sphere"))
    sphere_radius: float = number(0.866, above=0)  # sqrt(3)/2, the sphere around [-0.5, 0.5]^3 (the reference's)
    hull_margin: float = number(2.0, low=0)  # rays and grids reach this many hull voxels beyond the hull
    # hull (signed distance to the carved hull) | blank (the method's own untrained start)
    shape: str = choice("hull", ("hull", "blank"))
    # Flow steps relaxing the hull's unseen base (the cone under a flat base that cameras above never see) to
    # a minimal surface; 0 = off. Up is the cameras' mean up vector, so any world frame works.
    base_relax_steps: int = number(150, low=0)
    # ... except unseen patches narrower than this share of the object's box (a foot's sole: its carved cone
    # is shallower than the flow's own error).
    base_relax_min_size: float = number(0.25, low=0, high=1)
    # ... and the rest of the unseen surface (above that base, e.g. a belly) replaced by a fill of the seen
    # surface around it: bending plus this much membrane tension, relative to the hull mesh's edge length.
    # Judged after training, not on the start alone: it pays or is neutral on eight of the nine benchmark
    # objects and costs the open teapot (experiments/README.md, "The unseen fill after training").
    unseen_fill: bool = True
    unseen_fill_tension: float = number(1.0, low=0)


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
    # Colour sees the view direction (the reference NeuS does): neutral on Lambertian renders, 7% better geometry
    # under highlights (experiments/README.md, issue-20 table).
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


@dataclass
class VoxelConfig:
    """SJC's voxel NeRF (`recon.method=voxel`): dense density + colour grids,
    sigma = softplus(d * exp(d_scale) + shift)."""

    resolution: int = number(128, low=4)  # density voxels per side of the box
    coarse_resolution: int = number(0, low=0)  # >0: the density grid starts at this resolution ...
    upsample_at: float = number(0.5, low=0, high=1)  # ... upsampled at this fraction of the steps
    color_resolution: int = number(128, low=2)  # colour voxels per side
    density_shift: float = -1.0  # SJC's shift: empty space has sigma = softplus(-1) at d = 0
    step_size: float = number(0.004, above=0)  # ray-march step in world units: about half a voxel
    init_density: float = number(1.0, above=0)  # hull start: grid value inside the hull (outside: -init_density)
    density_scale_init: float = 5.3  # d_scale at step 0: sigma ramps from empty to opaque across 2 voxels
    view_dependent: bool = False  # colour grid only (SJC); true adds a tiny MLP on (features, view dir)
    lr: float = number(0.01, low=0)  # Adam on dense grids (SJC's Adamax 0.05 drove an SDS loss, not views)
    geometry_lr_scale: float = number(1.0, low=0)  # density-grid lr = lr * this
    geometry_lr_view_size: int = number(0, low=0)  # as in NeuSConfig
    # Squared Laplacian of the density grid at the visible samples: damps voxel-scale noise. Density values
    # are ~1 across the shell (an SDF's ~1 voxel), so useful weights are ~100x below an SDF's curvature's.
    lambda_density_laplacian: float = number(1e-5, low=0)

    def check(self, key: str) -> None:
        """Refuse a bad value of this section (``key``: its dotted name) with one line (InputError)."""
        check_fields(self, key)
        check_coarse_to_fine(self, key)


@dataclass
class OccupancyConfig:
    """Empty-space skipping with nerfacc's occupancy grid (recon/occupancy.py), inside the hull bounds."""

    # auto: on CUDA when nerfacc's extension builds | on (pure torch off CUDA) | off
    enabled: str = choice("auto", ("auto", "on", "off"))
    resolution: int = number(128, low=4)  # cells per side over the field's box (nerfacc's default)
    update_every: int = number(16, low=1)  # steps between refreshes from the field (nerfacc's default)
    # a cell is occupied above this opacity (or the grid's mean, if lower)
    threshold: float = number(0.01, low=0, high=1)
    # a cell's opacity decays by this per refresh unless the field renews it
    ema_decay: float = number(0.95, low=0, high=1)
    warmup_steps: int = number(256, low=0)  # refreshes before this step evaluate every cell


@dataclass
class GuardConfig:
    """The watch that keeps a run from silently diverging (recon/guard.py)."""

    enabled: bool = True
    every: int = number(50, low=1)  # steps between checks; the last healthy state is remembered at each
    psnr_drop: float = number(3.0, above=0)  # dB below the run's best recent training PSNR that counts as a collapse
    min_surface_px: float = number(0.02, low=0)  # NeuS: a surface softer than this share of a pixel has run away
    lr_factor: float = number(0.5, above=0, high=1)  # each roll-back multiplies the learning rate by this
    max_rollbacks: int = number(3, low=0)  # then the run stops with an error naming the likely cause


@dataclass
class ViewsConfig:
    """How far each view is trusted and what is learned per view (recon/view_corrections.py). The input view
    is trusted most and never corrected."""

    input_weight: float = number(1.0, above=0)  # the input view's confidence (loss weight and hull vote)
    # A generated view's confidence falls linearly with its angle from the input, to 1 - falloff opposite it
    # (generators drift more the farther they turn); all views weigh 1 when none is marked as the input.
    falloff: float = number(0.5, low=0, high=1)
    pose: bool = True  # learn a small rotation about the object + translation per view
    pose_lr: float = number(0.001, low=0)
    # squared rotation (radians) + translation (world units), summed over views
    lambda_pose: float = number(0.01, low=0)
    appearance: bool = True  # learn a colour gain and offset per view
    appearance_lr: float = number(0.01, low=0)
    lambda_appearance: float = number(0.01, low=0)  # squared log-gain + offset, summed over views


@dataclass
class LossConfig:
    """Weights (lambda_*) and schedules of the losses every method has; a weight of 0 switches a loss off.
    A method's own losses (eikonal, curvature, ...) are weighted in its section."""

    rgb: str = choice("soft_l1", ("soft_l1", "mse"))  # soft_l1: sqrt(d^2 + 1e-3) (reference NeuS) | mse (SJC)
    # the reference's 0.5 with its 8x lower grid lr; here colour leads the grids
    lambda_rgb: float = number(1.0, low=0)
    lambda_mask: float = number(1.0, low=0)  # MSE of opacity vs the view's alpha
    # SJC, needs recon.patches_per_batch > 0: smooth rendered depth in patches
    lambda_depth_smooth: float = number(0.0, low=0)
    # SJC, needs patches: L1 colour + depth between a camera and a jittered copy
    lambda_near_view: float = number(0.0, low=0)
    near_view_jitter: float = number(0.05, low=0)  # norm of the camera offset, world units (SJC)
    lambda_emptiness: float = number(0.0, low=0)  # SJC: mean log(1 + emptiness_scale * w) over samples
    emptiness_scale: float = number(10.0, low=0)
    lambda_sparsity: float = number(0.0, low=0)  # mean opacity of rays off the mask (pushes floaters away)
    # Loss name -> [start, full] as fractions of training; the weight ramps linearly from 0 at `start` to
    # lambda at `full` (a step when equal). Names absent here are on from step 0.
    schedules: dict[str, list[float]] = field(default_factory=lambda: {"depth_smooth": [0.5, 0.5]})

    def check(self, key: str) -> None:
        """Refuse a bad value of this section (``key``: its dotted name) with one line (InputError); which
        losses a schedule may name depends on the method (check_recon_config)."""
        check_fields(self, key)
        for name, ramp in self.schedules.items():
            if (not isinstance(ramp, (list, tuple)) or len(ramp) != 2
                    or not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in ramp)):
                raise InputError(f"{key}.schedules.{name}={ramp!r}: must be [start, full], two fractions of "
                                 "training from 0 to 1")


@dataclass
class ReconConfig:
    # neus (SDF grid) | neus_mlp (reference) | voxel | hull (silhouette carving)
    method: str = dataclasses.field(default="neus", metadata={"rule": {"choices": MethodNames(), "pattern": None,
                                                                       "words": None}})
    steps: int = number(1000, low=0)
    image_size: int = number(0, low=0)  # training resolution in px; 0 = the views' own size
    rays_per_batch: int = number(4096, low=1)
    # share of the batch drawn from foreground pixels: most where the surface is
    foreground_fraction: float = number(0.5, low=0, high=1)
    patch_size: int = number(8, low=1)  # square patches for depth smoothness / near-view
    patches_per_batch: int = number(0, low=0)  # patches per step, taken out of rays_per_batch (0 = none)
    # adam | adamw (reference NeuS, no weight decay) | adamax (SJC)
    optimizer: str = choice("adam", ("adam", "adamw", "adamax"))
    warmup_steps: int = number(20, low=0)  # linear lr warm-up
    lr_final_ratio: float = number(0.1, low=0, high=1)  # cosine decay to lr * this at the last step
    # steps between checkpoints (0 = only at the end); runs resume from the last
    checkpoint_every: int = number(300, low=0)
    background: float = number(1.0, low=0, high=1)  # white background (renders and targets composited onto it)
    # Binary masks (no partial coverage at the edges) are softened by about a pixel before training: auto (those
    # detected), soften (all), keep (none). Edges sharper than a pixel make NeuS's sharpness run away.
    mask_edges: str = choice("auto", ("auto", "soften", "keep"))
    guard: GuardConfig = field(default_factory=GuardConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    init: InitConfig = field(default_factory=InitConfig)
    neus: NeuSConfig = field(default_factory=NeuSConfig)
    neus_mlp: NeuSMLPConfig = field(default_factory=NeuSMLPConfig)
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    loss: LossConfig = field(default_factory=LossConfig)


METHOD_SECTIONS = ("neus", "neus_mlp", "voxel")  # recon sections that belong to one method each
GENERIC_LOSSES = ("rgb", "mask", "depth_smooth", "near_view", "emptiness", "sparsity")  # LossConfig's lambda_*
PATCH_LOSSES = ("depth_smooth", "near_view")  # losses that need recon.patches_per_batch > 0


def check_coarse_to_fine(settings, key: str) -> None:
    """A grid method's coarse start: 0 (none) or a resolution from 4 up to its full ``resolution``."""
    coarse = settings.coarse_resolution
    if coarse and not 4 <= coarse <= settings.resolution:
        raise InputError(f"{key}.coarse_resolution={coarse}: must be 0 (no coarse start) or a number from 4 to "
                         f"{key}.resolution ({settings.resolution})")


def check_losses(cfg: "ReconConfig", losses_of_method: tuple[str, ...]) -> None:
    """A loss weighted above 0 must be able to run, and a schedule must name a loss of the method."""
    if not cfg.patches_per_batch:
        on = [name for name in PATCH_LOSSES if getattr(cfg.loss, f"lambda_{name}")]
        if on:
            raise InputError(f"recon.loss.lambda_{on[0]} is on but recon.patches_per_batch is 0: these losses work "
                             "on square patches of pixels; set recon.patches_per_batch (e.g. 8) or the weight to 0")
    elif cfg.patches_per_batch * cfg.patch_size**2 >= cfg.rays_per_batch:
        raise InputError(f"recon.patches_per_batch={cfg.patches_per_batch} patches of {cfg.patch_size}^2 pixels "
                         f"leave no room in a batch of recon.rays_per_batch={cfg.rays_per_batch} rays: lower them "
                         "or raise recon.rays_per_batch")
    known = set(GENERIC_LOSSES) | set(losses_of_method)
    unknown = sorted(set(cfg.loss.schedules) - known)
    if unknown:
        raise InputError(f"recon.loss.schedules names {unknown[0]!r}, which is not a loss of recon.method="
                         f"{cfg.method}: use one of {', '.join(sorted(known))}")


def check_recon_config(cfg: "ReconConfig") -> None:
    """Refuse the first bad `recon.*` value (type, range, choice, or a combination) with one line naming the
    key and what it may be (InputError): called when the config loads, before any work. Each section checks
    itself; the method sections check their own settings."""
    from .methods import METHODS

    check_fields(cfg, "recon", nested=False)
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if dataclasses.is_dataclass(section):
            check = getattr(section, "check", None)
            check(f"recon.{f.name}") if check else check_fields(section, f"recon.{f.name}")
    check_losses(cfg, METHODS[cfg.method].losses)

# Keys of earlier versions -> where the setting lives now (refused with this hint, never silently ignored).
RENAMED_KEYS = {
    "recon.lr": "recon.neus.lr (recon.neus_mlp.lr for the MLP NeuS, recon.voxel.lr)",
    "recon.mesh": "export.mesh",
    "recon.input_view_weight": "recon.views.input_weight",
    "recon.neus.sdf": "recon.method (neus for the SDF grid, neus_mlp for the MLP)",
    "recon.neus.grid_resolution": "recon.neus.resolution",
    "recon.neus.grid_coarse_resolution": "recon.neus.coarse_resolution",
    "recon.neus.grid_upsample_at": "recon.neus.upsample_at",
    "recon.neus.color_grid_resolution": "recon.neus.color_resolution",
    "recon.neus.grid_lr_scale": "recon.neus.geometry_lr_scale",
    "recon.neus.grid_gradient": "recon.neus.gradient",
    "recon.neus.grid_init": "recon.init.shape",
    "recon.voxel.grid_lr_scale": "recon.voxel.geometry_lr_scale",
    "recon.voxel.init": "recon.init.shape",
    "recon.loss.lambda_eikonal": "recon.neus.lambda_eikonal (recon.neus_mlp.lambda_eikonal)",
    "recon.loss.lambda_curvature": "recon.neus.lambda_curvature",
    "recon.loss.lambda_area": "recon.neus.lambda_area",
    "recon.loss.lambda_density_laplacian": "recon.voxel.lambda_density_laplacian",
    **{f"recon.{k}": f"recon.init.{k}" for k in ("hull_resolution", "hull_tolerance", "hull_margin", "bounds",
                                                 "sphere_radius", "base_relax_steps", "base_relax_min_size",
                                                 "unseen_fill", "unseen_fill_tension")},
    **{f"recon.neus.{k}": f"recon.neus_mlp.{k}" for k in ("encoding", "n_frequencies", "hidden", "layers", "skip",
                                                         "hash_levels", "hash_features", "hash_log2_table",
                                                         "hash_base_resolution", "hash_finest_resolution")},
}


def stage_settings(cfg: ReconConfig) -> dict:
    """What the recon stage reads: the whole section less the other methods' sections (changing
    recon.voxel.lr does not retrain a NeuS run)."""
    d = dataclasses.asdict(cfg)
    return {k: v for k, v in d.items() if k not in METHOD_SECTIONS or k == cfg.method}


def config_from_dict(d: dict, cls=ReconConfig):
    """A config dataclass (nested sections too) from its ``dataclasses.asdict`` form, e.g. a field file's."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = config_from_dict(d[f.name], f.type) if dataclasses.is_dataclass(f.type) else d[f.name]
    return cls(**kwargs)
