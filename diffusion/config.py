"""Configuration of the views stage (the `diffusion:` section of configs/*.yaml)."""
from dataclasses import dataclass, field


@dataclass
class DiffusionConfig:
    model: str = "kxic/zero123-xl"  # hub id, diffusers folder, or original LDM .ckpt
    mode: str = "viewfusion"  # viewfusion | independent (plain Zero-1-to-3 per view, the baseline)
    num_views: int = 36  # views on the ring, the input included
    elevations: list[float] = field(default_factory=list)  # empty: one ring at the input's elevation
    steps: int = 75  # DDIM steps as the reference counts them (75 runs 76 updates: docs/reference.md section 3)
    guidance_scale: float = 3.0
    eta: float = 1.0
    inference_temp: float = 0.5
    auto_temp: float = 0.5
    window_deg: float = 125.0
    max_batch: int = 0  # UNet batch per call; 0 = automatic from free memory
    # torch | openvino: OpenVINO runs the UNet on the CPU (extra img2mesh[openvino]; converted once, cached on disk)
    backend: str = "torch"
    dtype: str = "auto"  # auto | fp32 | fp16 | bf16 (auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)
    # Added for the generator (img2mesh.diffusion):
    # Which cameras to generate instead of the ring(s): "" keeps num_views/elevations; "syncdreamer16",
    # "ringN" or a NeRF cameras .json name a layout (img2mesh.data.cameras.camera_layout).
    cameras: str = ""
    # reference: the LDM DDIM timesteps ViewFusion/Zero-1-to-3 run (c = 1000 // steps, +1, noisiest dropped);
    # diffusers: DDIMScheduler's own "leading" spacing from the model's scheduler config. Reference by default
    # because that is what the published results were produced with.
    schedule: str = "reference"
    # per_anchor: each anchor draws its own DDIM noise before the weighted sum (ViewFusion's main sampler);
    # shared: one draw per step for all anchors (its other variant). Only matters when eta > 0.
    eta_noise: str = "per_anchor"
    # One unconditional UNet row per step instead of one per anchor. Identical output (the unconditional
    # branch does not depend on the anchor); False reproduces the reference's call pattern, for checking.
    share_uncond: bool = True
    # Weight of the extra input images relative to each other (several inputs): softmax(-d / max d / t).
    # 1.0 is what ViewFusion's multi-input script uses.
    input_temp: float = 1.0
