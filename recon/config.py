"""Configuration of the recon and export stages (the `recon:` section of configs/*.yaml)."""
from dataclasses import dataclass, field
from typing import Union


@dataclass
class NeuSConfig:
    """NeuS field (SDF + colour + learned variance). Defaults: ViewFusion/SyncDreamer's `train_renderer`."""

    sdf: str = "mlp"  # mlp (SDF network on an encoding) | grid (dense SDF grid: the fast CPU path, same NeuS maths)
    encoding: str = "frequency"  # mlp only: frequency (reference, 6 octaves) | hashgrid (instant-NGP; tcnn on CUDA)
    n_frequencies: int = 6  # reference PE of x
    hidden: int = 256  # reference SDF MLP width
    layers: int = 8  # reference SDF MLP depth
    skip: list[int] = field(default_factory=lambda: [4])  # input re-injected before this layer (reference)
    init_radius: float = 0.5  # geometric init: sdf(x) = |x| - r at step 0 (in bounds-normalised units)
    feature_dim: int = 256  # SDF net -> colour net feature (reference); grid backend: colour-grid channels
    color_hidden: int = 256  # reference colour MLP width
    color_layers: int = 4  # reference colour MLP depth
    view_frequencies: int = 4  # PE of the view direction fed to the colour net (reference)
    view_dependent: bool = True  # false: colour ignores the view direction (Lambertian scenes, fewer ambiguities)
    variance_init: float = 0.3  # inv_s = exp(10 * v): NeuS's learned sharpness (reference)
    # Hash grid (instant-NGP / instant-NSR sizes): levels x features, 2^log2_table entries per level.
    hash_levels: int = 16
    hash_features: int = 2
    hash_log2_table: int = 19
    hash_base_resolution: int = 16
    hash_finest_resolution: int = 2048
    # Dense-grid backend (sdf=grid): SDF grid over the object's box, initialised from the carved hull's SDF.
    grid_resolution: int = 128  # SDF voxels per side of the sampling box
    grid_coarse_resolution: int = 0  # >0: start at this resolution and upsample at grid_upsample_at (coarse-to-fine)
    grid_upsample_at: float = 0.3  # fraction of steps
    color_grid_resolution: int = 64  # colour feature grid per side (colour varies slower than shape needs)
    grid_gradient: str = "numerical"  # numerical (central differences, smooth normals) | analytic (trilinear's own)
    grid_init: str = "hull"  # hull (carved hull's signed distance) | sphere (|x| - init_radius)
    grid_lr_scale: float = 1.0  # SDF-grid lr = lr * this (world units per step; colour grid and MLPs use lr)
    # Ray samples.
    n_samples: int = 64  # uniform samples inside the ray's bounds (reference)
    n_importance: int = 64  # importance samples, drawn in up_sample_steps rounds (reference 64 in 4 x 16)
    up_sample_steps: int = 4
    up_sample_growth: float = 2.0  # importance round i weights samples with inv_s = 64 * growth^i (reference 2)
    cos_anneal_steps: int = 200  # NeuS cos anneal: 0 = off (reference 200)


@dataclass
class VoxelConfig:
    """SJC voxel NeRF: dense density + colour grids, sigma = softplus(d * exp(d_scale) + shift)."""

    resolution: int = 100  # density voxels per side (SJC: 100^3 over [-1, 1]^3)
    coarse_resolution: int = 0  # >0: the density grid starts at this resolution, upsampled at upsample_at
    upsample_at: float = 0.5  # fraction of steps
    color_resolution: int = 100  # colour voxels per side
    density_shift: float = -1.0  # SJC's shift: empty space has sigma = softplus(-1) ~ 0.31 at d = 0
    step_size: float = 0.01  # ray-march step in world units (SJC 0.01 over [-1, 1]^3)
    init: str = "hull"  # hull (dense inside the carved hull) | zero (SJC: everything at d = 0)
    init_density: float = 1.0  # hull init: grid value inside the hull (outside: -init_density)
    density_scale_init: float = 0.0  # d_scale at step 0 (SJC: 0); sigma = softplus(d * exp(d_scale) + shift)
    view_dependent: bool = False  # colour grid only (SJC); true adds a tiny MLP on (features, view dir)
    # The voxel grids' own lr (recon.lr is NeuS's, 5e-4 for its MLP): dense grids need steps ~20x larger.
    # 0.01 with Adam is what bench_recon measured here; SJC's Adamax 0.05 drove an SDS loss, not views.
    lr: float = 0.01
    grid_lr_scale: float = 1.0  # density-grid lr = voxel.lr * this (colour grid: voxel.lr)


@dataclass
class OccupancyConfig:
    """Empty-space skipping with nerfacc's occupancy grid (recon/occupancy.py), inside the hull bounds."""

    enabled: str = "auto"  # auto: on CUDA when nerfacc's extension builds | on (pure torch off CUDA) | off
    resolution: int = 128  # cells per side over the field's box (nerfacc's default)
    update_every: int = 16  # steps between refreshes from the field (nerfacc's default)
    threshold: float = 0.01  # a cell is occupied above this opacity (or the grid's mean, if lower)
    ema_decay: float = 0.95  # a cell's opacity decays by this per refresh unless the field renews it
    warmup_steps: int = 256  # refreshes before this step evaluate every cell


@dataclass
class LossConfig:
    """Loss weights (lambda_*) and schedules; a weight of 0 switches a loss off."""

    rgb: str = "soft_l1"  # soft_l1: sqrt(d^2 + 1e-3) (reference NeuS) | mse (SJC)
    lambda_rgb: float = 0.5  # reference NeuS
    lambda_mask: float = 1.0  # MSE of opacity vs the view's alpha (reference NeuS)
    lambda_eikonal: float = 0.1  # reference NeuS
    lambda_depth_smooth: float = 0.0  # SJC: (mean |dx| + mean |dy|) / 2 of rendered depth, inside the mask
    lambda_near_view: float = 0.0  # SJC: L1 colour + depth between a camera and a jittered copy
    near_view_jitter: float = 0.05  # norm of the camera offset, world units (SJC)
    lambda_emptiness: float = 0.0  # SJC: mean log(1 + emptiness_scale * w) over samples (off in its README run)
    emptiness_scale: float = 10.0  # SJC
    lambda_sparsity: float = 0.0  # mean opacity of rays off the mask (pushes floaters away)
    lambda_curvature: float = 0.0  # grid SDF only: squared Laplacian of the SDF near the surface (smooth shapes)
    # Grid SDF only: area of the zero level (world units^2), i.e. mean-curvature flow; unseen surfaces (an
    # underside no camera sees) shrink towards the smallest the silhouettes allow instead of the hull's cone.
    # (On the voxel NeRF it was measured harmful: spot Chamfer 0.00408 -> 0.00443 at 0.01.)
    lambda_area: float = 0.0
    # Voxel NeRF only: squared Laplacian of the density grid at the visible samples. Its values are ~1 across
    # the shell (an SDF's ~1 voxel), so useful weights are ~100x smaller than lambda_curvature's: 1e-5 took
    # spot from 1.05x to 0.99x the hull's Chamfer (bench_recon, CPU preset) by damping voxel-scale noise.
    lambda_density_laplacian: float = 0.0
    # Schedules: loss name -> [start, full] as fractions of training; the weight ramps linearly from 0 at
    # `start` to lambda at `full` (a step function when equal). Names absent here are on from step 0.
    schedules: dict[str, list[float]] = field(default_factory=lambda: {"depth_smooth": [0.5, 0.5]})


@dataclass
class ReconConfig:
    method: str = "neus"  # neus | voxel | hull (silhouette carving: the fast baseline)
    steps: int = 2000  # reference NeuS
    image_size: int = 0  # training resolution in px; 0 = the views' own size
    rays_per_batch: int = 4096  # reference 3584 random + 512 foreground rays
    foreground_fraction: float = 0.125  # share of the batch drawn from foreground pixels (512 / 4096)
    patch_size: int = 8  # square patches for depth smoothness / near-view (0 = no patches)
    patches_per_batch: int = 0  # patches per step, taken out of rays_per_batch (0 = none)
    optimizer: str = "adamw"  # adamw (reference NeuS) | adam | adamax (SJC)
    lr: float = 5e-4  # reference NeuS
    warmup_steps: int = 100  # linear lr warm-up (reference)
    lr_final_ratio: float = 0.02  # cosine decay to lr * this at the last step (reference x0.02)
    checkpoint_every: int = 500  # steps between checkpoints (0 = only at the end); runs resume from the last
    input_view_weight: float = 1.0  # loss weight of the input view's rays relative to generated views
    bounds: str = "hull"  # hull: sample only inside the carved hull (fast, tight) | sphere: radius sphere_radius
    sphere_radius: float = 0.866  # reference: sqrt(3)/2, the sphere around [-0.5, 0.5]^3
    hull_resolution: int = 128  # carving grid per side (hull method, bounds and grid init)
    # Share of views that may see a point as background without carving it: 0 for exact renders; generated
    # views disagree a little (a strict hull would cut away what one of them missed).
    hull_tolerance: float = 0.0
    hull_margin: float = 2.0  # ray bounds: the hull dilated by this many hull voxels
    # Hull-initialised grids: flow steps relaxing the hull's unseen base (the cone under a flat base that a
    # ring of cameras above never sees) to a minimal surface before training (recon/unseen.py); 0 = off.
    base_relax_steps: int = 150
    # ... except unseen patches narrower than this share of the object's box (a foot's sole: the flow lifted
    # spot's soles 0.015 above the truth where the hull was 0.007 below; spot NeuS Chamfer 0.00333 -> 0.00321).
    base_relax_min_size: float = 0.25
    # ... and the rest of the unseen surface (above that base, e.g. a belly) replaced by a fill of the seen
    # surface around it: bending (C1 with it) plus this much membrane tension, relative to the hull mesh's
    # edge length (0: pure bending; 1, measured best on the benchmark objects, is mostly membrane).
    unseen_fill: bool = True
    unseen_fill_tension: float = 1.0
    background: float = 1.0  # white background (renders and targets composited onto it)
    neus: NeuSConfig = field(default_factory=NeuSConfig)
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
