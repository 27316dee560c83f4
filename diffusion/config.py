"""Configuration of the views stage (the `diffusion:` section of configs/*.yaml), with each key's allowed values
(checked when the config loads, by :func:`check_diffusion_config`).

`steps` and `guidance_scale` left unset (null) take the generator's reference values (GENERATOR_DEFAULTS): the
model folder says which generator it is, so `--model <SyncDreamer>` samples with 50 steps and guidance 2.0 and
the default Zero-1-to-3 with 75 and 3.0, unless a preset or an override sets them (then both generators take
the value given). eta is 1.0 for both.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from img2mesh.data.errors import InputError
from img2mesh.data.settings import check_fields, choice, number

from .syncdreamer.settings import SyncDreamerSettings

MODES = ("viewfusion", "independent")
DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16", "float32", "float16", "half", "bfloat16")
SCHEDULES = ("reference", "diffusers")
ETA_NOISE = ("per_anchor", "shared")
BACKENDS = ("torch", "openvino")
GENERATORS = ("zero123", "syncdreamer")
GENERATOR_DEFAULTS = {"zero123": {"steps": 75, "guidance_scale": 3.0},
                      "syncdreamer": {"steps": 50, "guidance_scale": 2.0}}


@dataclass
class DiffusionConfig:
    # Zero-1-to-3: hub id, diffusers folder or original LDM .ckpt; SyncDreamer: a converted folder, the
    # original .ckpt (with its CLIP file) or a hub repository holding both. The model says which it is.
    model: str = "kxic/zero123-xl"
    mode: str = choice("viewfusion", MODES)  # viewfusion | independent (plain Zero-1-to-3 per view, the baseline)
    num_views: int = number(36, low=2)  # views on the ring, the input included
    elevations: list[float] = number([], low=-90, high=90)  # empty: one ring at the input's elevation
    # DDIM steps as the reference counts them (Zero-1-to-3: 75 runs 76 updates, docs/reference.md section 3);
    # null: the generator's own (75, SyncDreamer 50)
    steps: Optional[int] = number(None, low=1)
    guidance_scale: Optional[float] = number(None, low=0)  # null: the generator's own (3.0, SyncDreamer 2.0)
    eta: float = number(1.0, low=0)
    inference_temp: float = number(0.5, above=0)
    auto_temp: float = number(0.5, above=0)
    window_deg: float = number(125.0, above=0, high=360)
    max_batch: int = number(0, low=0)  # UNet batch per call; 0 = automatic from free memory
    # torch | openvino: OpenVINO runs the UNet on the CPU (extra img2mesh[openvino]; converted once, cached on disk)
    backend: str = choice("torch", BACKENDS)
    # auto | fp32 | fp16 | bf16 (auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)
    dtype: str = choice("auto", DTYPE_NAMES)
    # Added for the generator (img2mesh.diffusion):
    # Which cameras to generate instead of the ring(s): "" keeps num_views/elevations; "syncdreamer16",
    # "ringN" or a NeRF cameras .json name a layout (img2mesh.data.cameras.camera_layout).
    cameras: str = choice("", ("", "syncdreamer16"), pattern=r"ring[0-9]+|.+\.json",
                          words="'' (the ring), ringN, syncdreamer16 or a cameras .json file")
    # reference: the LDM DDIM timesteps ViewFusion/Zero-1-to-3 run (c = 1000 // steps, +1, noisiest dropped);
    # diffusers: DDIMScheduler's own "leading" spacing from the model's scheduler config. Reference by default
    # because that is what the published results were produced with.
    schedule: str = choice("reference", SCHEDULES)
    # per_anchor: each anchor draws its own DDIM noise before the weighted sum (ViewFusion's main sampler);
    # shared: one draw per step for all anchors (its other variant). Only matters when eta > 0.
    eta_noise: str = choice("per_anchor", ETA_NOISE)
    # One unconditional UNet row per step instead of one per anchor. Identical output (the unconditional
    # branch does not depend on the anchor); False reproduces the reference's call pattern, for checking.
    share_uncond: bool = True
    # Weight of the extra input images relative to each other (several inputs): softmax(-d / max d / t).
    # 1.0 is what ViewFusion's multi-input script uses.
    input_temp: float = number(1.0, above=0)
    # A torch file of explicit random draws replacing the sampler's own, to match another implementation
    # draw for draw (SyncDreamer: x_T, posterior_noise, step_noise; README "SyncDreamer"). "" = seeded draws.
    noise: str = ""
    syncdreamer: SyncDreamerSettings = field(default_factory=SyncDreamerSettings)


def with_generator_defaults(cfg: DiffusionConfig, generator: str) -> DiffusionConfig:
    """``cfg`` with its unset (None) sampling keys filled in with ``generator``'s reference values."""
    defaults = GENERATOR_DEFAULTS[generator]
    return dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if getattr(cfg, k) is None})


def requested_dtype(cfg: DiffusionConfig) -> str:
    """The precision the model loads in: ``dtype``, except that explicit draws (``noise``) with ``auto`` take
    fp32, since they are there to match the original implementations, which sample in fp32."""
    return "fp32" if cfg.noise and cfg.dtype == "auto" else cfg.dtype


def check_diffusion_config(cfg: DiffusionConfig) -> None:
    """Refuse a bad `diffusion.*` value with one line naming the key and its allowed values (InputError).
    Checks that involve more than one key go here too."""
    check_fields(cfg, "diffusion")
    if cfg.syncdreamer.crop_size == 0:
        raise InputError("diffusion.syncdreamer.crop_size=0: must be -1 (keep the framing) or the object's size in "
                         "pixels of a 256 px image (200, as the authors recommend)")
