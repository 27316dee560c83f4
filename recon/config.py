"""Configuration of the recon stage (the `recon:` section of configs/*.yaml), and its check.

The defaults are the product's: a dense-grid NeuS started from the carved hull (`configs/reference.yaml` is
the reference NeuS, `configs/cpu.yaml` the 2-core preset; each holds only what differs from these).
:class:`ReconConfig` is the settings every method shares (here and in recon/sections.py) plus one section per
method, each the method's own config dataclass (recon/methods/), named by the method's ``section``: a new
method brings its section with it. The methods' sections use the same names for the same ideas: `resolution`,
`coarse_resolution` / `upsample_at` (coarse-to-fine), `color_resolution`, `lr` and `geometry_lr_scale`, and the
weights of the losses only that method has (`lambda_*`). Measured effects of the values are in
experiments/README.md.
"""
import dataclasses
from dataclasses import dataclass, field

from img2mesh.data.settings import check_fields, choice, number

from .methods import METHODS
from .methods.neus import NeuSConfig, NeuSMLPConfig  # noqa: F401 (the recon settings, importable from here)
from .methods.voxel import VoxelConfig  # noqa: F401
from .sections import GuardConfig, InitConfig, LossConfig, OccupancyConfig, ViewsConfig, check_losses


@dataclass
class SharedReconConfig:
    """The `recon` keys every method reads; :class:`ReconConfig` adds each method's section."""

    # neus (SDF grid) | neus_mlp (reference) | voxel | hull (silhouette carving): a live view of METHODS, so a
    # method registered there is a valid choice at once
    method: str = field(default="neus", metadata={"rule": {"choices": METHODS.keys(), "pattern": None,
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
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def method_sections(methods) -> dict[str, type]:
    """Each method's config section: its ``section`` name -> its config dataclass (methods without settings,
    like the hull, have none)."""
    return {m.section: m.config for m in methods.values() if m.config is not None}


def recon_config_class(methods) -> type:
    """The `recon` config class for a dict of methods: :class:`SharedReconConfig` plus one field per method
    section, defaulting to that method's defaults."""
    sections = [(name, cls, field(default_factory=cls)) for name, cls in method_sections(methods).items()]
    return dataclasses.make_dataclass("ReconConfig", sections, bases=(SharedReconConfig,),
                                      namespace={"__module__": __name__,
                                                 "__doc__": "The `recon` section: shared keys + one per method."})


ReconConfig = recon_config_class(METHODS)
METHOD_SECTIONS = tuple(method_sections(METHODS))  # recon sections that belong to one method each


def check_recon_config(cfg: ReconConfig) -> None:
    """Refuse the first bad `recon.*` value (type, range, choice, or a combination) with one line naming the
    key and what it may be (InputError): called when the config loads, before any work. Each section checks
    itself; the method sections check their own settings."""
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
    own = METHODS[cfg.method].section
    return {k: v for k, v in d.items() if k not in METHOD_SECTIONS or k == own}


def config_from_dict(d: dict, cls=ReconConfig):
    """A config dataclass (nested sections too) from its ``dataclasses.asdict`` form, e.g. a field file's."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = config_from_dict(d[f.name], f.type) if dataclasses.is_dataclass(f.type) else d[f.name]
    return cls(**kwargs)
