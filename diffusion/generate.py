"""The views stage: one prepared input (or several posed inputs) -> posed novel views with object masks.

``generate_views`` builds the target cameras, plans the generation (ViewFusion or independent Zero-1-to-3),
samples, decodes, removes the background of each generated view and returns :class:`Views`: the input(s)
first (``is_input``), then the generated views sorted by azimuth. Zero-1-to-3 cannot change the lens, so
generated views keep the input camera's field of view and size; only their poses come from the targets.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from img2mesh.data.background import DEFAULT_MODEL as DEFAULT_REMBG_MODEL
from img2mesh.data.cameras import Camera, camera_layout, ring_cameras
from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import InputError
from img2mesh.data.preprocess import PreparedInput
from img2mesh.data.progress import progress
from img2mesh.data.views import View, Views

from .config import MODES, DiffusionConfig, check_diffusion_config, with_generator_defaults
from .devices import auto_max_batch
from .openvino_unet import check_backend
from .pipeline import ConditionRows, SamplerSettings, SamplerStats, denoise, denoising_steps
from .viewfusion import FusionStep, RelativePose, plan_independent, plan_viewfusion, relative_poses
from .zero123 import Zero123, images_to_tensor, pose_vectors, tensor_to_images

log = logging.getLogger(__name__)

SAME_POSE_DEG = 1e-3  # a target this close to an input IS that input: it is not generated


@dataclass
class Synthesis:
    """The sampled target views, in target order."""

    images: torch.Tensor  # [n_targets, 3, H, W] in [-1, 1]: the decoded latents, clamped
    latents: torch.Tensor  # [n_targets, 4, h, w] fp32 denoised latents, scaled (what the VAE decoded)
    timesteps: torch.Tensor  # [S'] long: the DDIM timesteps every target ran, in execution order
    stats: SamplerStats
    plan: list[FusionStep]


def sampler_settings(cfg: DiffusionConfig, model: Zero123, latent_hw: tuple[int, int]) -> SamplerSettings:
    max_batch = cfg.max_batch or auto_max_batch(model.device, model.dtype, latent_hw,
                                                model.unet.config.block_out_channels[0])
    return SamplerSettings(steps=cfg.steps, guidance_scale=cfg.guidance_scale, eta=cfg.eta, eta_noise=cfg.eta_noise,
                           schedule=cfg.schedule, share_uncond=cfg.share_uncond, max_batch=max_batch)


def anchor_poses(target: RelativePose, anchors: list[RelativePose]) -> torch.Tensor:
    """Pose vectors [A, 4] of ``target`` seen from each anchor (dphi from signed offsets, not wrapped)."""
    d_polar = torch.tensor([-math.radians(target.elevation - a.elevation) for a in anchors], dtype=torch.float64)
    d_azimuth = torch.tensor([math.radians(target.azimuth - a.azimuth) for a in anchors], dtype=torch.float64)
    d_radius = torch.tensor([target.radius - a.radius for a in anchors], dtype=torch.float64)
    return pose_vectors(d_polar, d_azimuth, d_radius).float()


def synthesize(model: Zero123, input_images: torch.Tensor, inputs: list[RelativePose], targets: list[RelativePose],
               cfg: DiffusionConfig, generator: torch.Generator | None = None,
               latents: torch.Tensor | None = None, on_step: Callable[[int], None] | None = None) -> Synthesis:
    """Sample every target view. input_images [n_in, 3, H, W] in [-1, 1]; latents: initial noise
    [n_targets, 4, h, w] in target order, or [1, 4, h, w] shared by all targets, or None (drawn).
    ``on_step(n)``: called after every denoising step with the number of views it advanced (progress); the
    calls add up to n_targets x ``denoising_steps``."""
    # 1. check inputs
    cfg = with_generator_defaults(cfg, "zero123")
    n_in, n_t = len(inputs), len(targets)
    assert input_images.ndim == 4 and input_images.shape[:2] == (n_in, 3), (
        f"input_images must be [{n_in}, 3, H, W], got {tuple(input_images.shape)}")
    if cfg.mode not in MODES:
        raise InputError(f"unknown diffusion.mode {cfg.mode!r}: choose viewfusion or independent")
    h, w = (s // model.vae_scale_factor for s in input_images.shape[2:])
    shape = (n_t, model.latent_channels, h, w)
    settings = sampler_settings(cfg, model, (h, w))
    stats = SamplerStats()

    # 2. initial noise: one x_T per target, shared by all of its anchors
    if latents is None:
        latents = randn_tensor(shape, generator=generator, device=model.device, dtype=torch.float32)
    latents = latents.to(model.device, torch.float32)
    if latents.shape[0] == 1 and n_t > 1:
        latents = latents.expand(shape)
    if tuple(latents.shape) != shape:
        raise InputError(f"latents must be [{n_t}, {shape[1]}, {h}, {w}] or [1, ...], got {tuple(latents.shape)}")

    # 3. conditioning of the inputs, computed once (CLIP embedding + concat latent per view)
    # (generated views fill their slots as they become anchors)
    embeds = list(model.encode_clip(input_images)) + [None] * n_t  # each [P]
    concats = list(model.encode_concat(input_images)) + [None] * n_t  # each [4, h, w]
    poses = list(inputs) + list(targets)  # view index: inputs first, then targets

    def rows_for(steps: list[FusionStep]) -> ConditionRows:
        context, concat, group, weight = [], [], [], []
        for g, step in enumerate(steps):
            target = poses[n_in + step.target]
            context.append(model.context(torch.stack([embeds[a] for a in step.anchors]),
                                         anchor_poses(target, [poses[a] for a in step.anchors])))
            concat.append(torch.stack([concats[a] for a in step.anchors]))
            group += [g] * len(step.anchors)
            weight.append(torch.as_tensor(step.weights, dtype=torch.float32))
        return ConditionRows(torch.cat(context), torch.cat(concat), torch.tensor(group), torch.cat(weight))

    # 4. sample
    images, x0 = [None] * n_t, [None] * n_t
    on_step = on_step or (lambda n: None)
    if cfg.mode == "independent":  # every target at once: all rows in the same UNet batches
        plan = plan_independent(inputs, targets, cfg.input_temp)
        out = denoise(model, rows_for(plan), latents, settings, generator, stats, on_step=lambda: on_step(n_t))
        x0 = list(out.latents)
        images = list(torch.cat([model.decode(chunk) for chunk in out.latents.split(settings.max_batch)]))
    else:  # ViewFusion: one target after another, each new view becoming an anchor
        plan = plan_viewfusion(inputs, targets, cfg.window_deg, cfg.inference_temp, cfg.auto_temp, cfg.input_temp)
        for step in plan:
            out = denoise(model, rows_for([step]), latents[step.target:step.target + 1], settings, generator, stats,
                          on_step=lambda: on_step(1))
            image = model.decode(out.latents)  # [1, 3, H, W], clamped to [-1, 1]: the next views' anchor image
            images[step.target], x0[step.target] = image[0], out.latents[0]
            embeds[n_in + step.target] = model.encode_clip(image)[0]  # encoded once, reused by later views
            concats[n_in + step.target] = model.encode_concat(image)[0]
    # (every denoise call ran the same settings, hence the same timesteps)
    return Synthesis(torch.stack(images), torch.stack(x0), out.timesteps, stats, plan)


def target_cameras(cfg: DiffusionConfig, input_cameras: list[Camera], cameras=None) -> list[Camera]:
    """The views to generate: ``cameras`` (a list, or a layout name / cameras .json), else ``cfg.cameras``,
    else a ring of ``cfg.num_views`` per elevation in ``cfg.elevations`` (default: the input's), starting at the
    input's azimuth, at its radius. Targets at an input's pose are dropped (that view is the input)."""
    first = input_cameras[0]
    spec = cameras if cameras is not None else (cfg.cameras or None)
    if isinstance(spec, str):
        targets = camera_layout(spec, elevation=first.elevation, radius=first.radius, fov_x=first.fov_x,
                                size=first.width, start_azimuth=first.azimuth)
    elif spec is not None:
        targets = list(spec)
        if not all(isinstance(c, Camera) for c in targets):
            raise InputError("cameras must be a list of img2mesh.data.cameras.Camera or a layout name")
    else:
        if cfg.num_views < 2:
            raise InputError(f"diffusion.num_views must be at least 2 (the input and one view), got {cfg.num_views}")
        targets = [cam for elevation in (cfg.elevations or [first.elevation])
                   for cam in ring_cameras(cfg.num_views, float(elevation), first.radius, first.fov_x, first.width,
                                           start_azimuth=first.azimuth)]
    inputs = relative_poses(input_cameras, first)
    kept = [cam for cam, pose in zip(targets, relative_poses(targets, first))
            if all(abs(pose.azimuth - p.azimuth) + abs(pose.elevation - p.elevation) > SAME_POSE_DEG for p in inputs)]
    if not kept:
        raise InputError("no camera to generate: every target coincides with an input view")
    if any(abs(c.fov_x - first.fov_x) > 0.01 for c in kept):  # 0.01 rad: SyncDreamer's fx = 280 is ~49.1 deg too
        log.warning("Zero-1-to-3 keeps the input's field of view: target cameras' own fov is ignored")
    # Zero-1-to-3 keeps the input's lens: the generated views get the input's fov and size
    return [Camera(c.c2w, first.fov_x, first.width, first.height) for c in kept]


def mask_maker(remove_background: bool | Callable[[np.ndarray], np.ndarray] = True,
               rembg_model: str = DEFAULT_REMBG_MODEL) -> Callable[[np.ndarray], np.ndarray]:
    """rgb uint8 [H, W, 3] -> mask uint8 [H, W] for the generated views: rembg ``rembg_model`` (its session
    loaded now, so that a bad model fails before sampling), opaque (False), or the given callable."""
    if remove_background is True:
        from img2mesh.data.background import load_session
        from img2mesh.data.background import remove_background as rembg_mask

        load_session(rembg_model)
        return lambda image: rembg_mask(image, rembg_model)
    if remove_background is False:
        return lambda image: np.full(image.shape[:2], 255, np.uint8)
    return remove_background


def masked_views(rgb: np.ndarray, cameras: list[Camera], mask_of: Callable[[np.ndarray], np.ndarray]) -> list[View]:
    """rgb [N, H, W, 3] float in [0, 1] + cameras -> RGBA views whose alpha is ``mask_of`` each image."""
    views = []
    for j in progress(range(len(cameras)), total=len(cameras), desc="masks"):
        image8 = (np.clip(rgb[j], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        mask = np.asarray(mask_of(image8), dtype=np.float32) / 255.0
        assert mask.shape == image8.shape[:2], f"mask {mask.shape} does not match the image {image8.shape[:2]}"
        views.append(View(np.concatenate([rgb[j], mask[..., None]], axis=-1).astype(np.float32), cameras[j]))
    return views


def generate_views(cfg: DiffusionConfig, prepared: PreparedInput, *, model: Zero123 | None = None,
                   inputs: list[PreparedInput] | None = None, cameras=None, generator: torch.Generator | None = None,
                   latents: torch.Tensor | None = None, seed: int | None = None, device=None,
                   remove_background: bool | Callable[[np.ndarray], np.ndarray] = True,
                   rembg_model: str = DEFAULT_REMBG_MODEL) -> Views:
    """Generate novel views of ``prepared`` (plus optional extra posed ``inputs``).

    model: a loaded bundle (else ``cfg.model`` is loaded on ``device`` in ``cfg.dtype``). cameras: a list of
    Cameras or a layout name, overriding the config's ring. generator / seed: the noise source (a CPU generator
    seeded with ``seed`` or 0 by default, so runs repeat bit-for-bit). latents: initial noise [n_targets, 4, h, w]
    in target order, or [1, 4, h, w] for all. remove_background: True -> rembg ``rembg_model`` makes each
    generated view's mask; a callable rgb uint8 [H, W, 3] -> mask uint8 [H, W] replaces it; False -> opaque.
    Returns the input view(s) first (``is_input``), then the generated views sorted by azimuth from the input.
    """
    # 1. check the request
    cfg = with_generator_defaults(cfg, "zero123")
    check_diffusion_config(cfg)
    check_backend(cfg.backend)
    all_inputs = [prepared, *(inputs or [])]
    size = prepared.rgba.shape[:2]
    if any(p.rgba.shape[:2] != size for p in all_inputs):
        raise InputError("all input images must have the same size after preprocessing")

    # 2. the model, on the requested device
    from .generators import generator_of, generator_of_model
    from .loading import load_zero123

    if (generator_of_model(model) if model is not None else generator_of(cfg.model)) == "syncdreamer":
        raise InputError("generate_views runs Zero-1-to-3 models; a SyncDreamer model generates its views from the "
                         "input image itself: use img2mesh.diffusion.syncdreamer.generate_syncdreamer_views")
    if model is None:
        model = load_zero123(cfg.model, device=device, dtype=cfg.dtype)
    elif device is not None and resolve_device(device) != model.device:
        model.to(device=device)
    if cfg.backend == "openvino":
        from .openvino_unet import use_openvino_unet

        use_openvino_unet(model, (size[0] // model.vae_scale_factor, size[1] // model.vae_scale_factor),
                          "bf16" if model.dtype == torch.bfloat16 else "fp32")
    if generator is None:
        generator = torch.Generator("cpu").manual_seed(0 if seed is None else int(seed))

    # 3. poses relative to the first input, and the cameras to generate
    input_cameras = [p.camera for p in all_inputs]
    targets = target_cameras(cfg, input_cameras, cameras)
    input_poses, target_poses = relative_poses(input_cameras, input_cameras[0]), relative_poses(targets, input_cameras[0])

    # 4. the mask maker, set up before sampling so that a bad rembg model fails now, not after it
    mask_of = mask_maker(remove_background, rembg_model)

    # 5. sample and decode; the bar counts denoising steps of single views
    input_images = images_to_tensor(np.stack([p.rgb_on_white for p in all_inputs]))
    total = len(targets) * denoising_steps(model, cfg.steps, cfg.schedule)
    with progress(total=total, desc=f"views ({cfg.mode})", unit="step") as bar:
        result = synthesize(model, input_images, input_poses, target_poses, cfg, generator, latents, bar.update)
    rgb = tensor_to_images(result.images)  # [n_targets, H, W, 3] in [0, 1]

    # 6. masks for the reconstructor
    generated = masked_views(rgb, targets, mask_of)

    # 7. inputs first, then the generated views by azimuth (from the input, as the reference sorts them)
    order = sorted(range(len(targets)), key=lambda j: (target_poses[j].azimuth % 360.0, target_poses[j].elevation))
    views = [View(p.rgba.astype(np.float32), p.camera, is_input=True) for p in all_inputs]
    views += [generated[j] for j in order]
    for i, view in enumerate(views):
        view.name = f"r_{i:03d}"
    return Views(views)
