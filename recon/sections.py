"""The recon sections every method shares (`recon.init`, `recon.guard`, `recon.views`, `recon.occupancy`,
`recon.loss`), each key with its allowed values. The methods' own sections are in their files (recon/methods/);
recon/config.py puts them all together. Measured effects of the values are in experiments/README.md.
"""

from dataclasses import dataclass, field

from img2mesh.data.errors import InputError
from img2mesh.data.settings import check_fields, choice, number

GENERIC_LOSSES = ("rgb", "mask", "depth_smooth", "near_view", "emptiness", "sparsity")  # LossConfig's lambda_*
PATCH_LOSSES = ("depth_smooth", "near_view")  # losses that need recon.patches_per_batch > 0


@dataclass
class InitConfig:
    """The start every method shares (recon/start/prepare.py): the carved hull, the box the field lives in, and the
    hull-initialised shape with the priors for what no camera sees."""

    hull_resolution: int = number(128, low=8)  # carving grid per side
    # Robust carving (recon/start/hull.py): the share of the views' confidence that may see a point as background
    # without carving it, and how many pixels each generated view's mask is grown first. auto: both 0 when the
    # masks agree (exact renders), else set from how far they disagree (recon/start/carving.py).
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
    # Judged after training, not on the start alone: it pays or is neutral on most benchmark objects and costs
    # an open one, whose unseen inside the fill closes (experiments/README.md, "The unseen fill after training").
    unseen_fill: bool = True
    unseen_fill_tension: float = number(1.0, low=0)


@dataclass
class OccupancyConfig:
    """Empty-space skipping with nerfacc's occupancy grid (recon/render/occupancy.py), inside the hull bounds."""

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
    """The watch that keeps a run from silently diverging (recon/train/guard.py)."""

    enabled: bool = True
    every: int = number(50, low=1)  # steps between checks; the last healthy state is remembered at each
    psnr_drop: float = number(3.0, above=0)  # dB below the run's best recent training PSNR that counts as a collapse
    min_surface_px: float = number(0.02, low=0)  # NeuS: a surface softer than this share of a pixel has run away
    lr_factor: float = number(0.5, above=0, high=1)  # each roll-back multiplies the learning rate by this
    max_rollbacks: int = number(3, low=0)  # then the run stops with an error naming the likely cause


@dataclass
class ViewsConfig:
    """How far each view is trusted and what is learned per view (recon/train/view_corrections.py). The input view
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


def check_losses(cfg, losses_of_method: tuple[str, ...]) -> None:
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
