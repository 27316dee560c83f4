"""Configuration of the views stage (the `diffusion:` section of configs/*.yaml)."""
from dataclasses import dataclass, field


@dataclass
class DiffusionConfig:
    model: str = "kxic/zero123-xl"  # hub id, diffusers folder, or original LDM .ckpt
    mode: str = "viewfusion"  # viewfusion | independent (plain Zero-1-to-3 per view, the baseline)
    num_views: int = 36  # views on the ring, the input included
    elevations: list[float] = field(default_factory=list)  # empty: one ring at the input's elevation
    steps: int = 75  # DDIM steps as the reference counts them (75 executes 76 updates, REFERENCE.md 2b)
    guidance_scale: float = 3.0
    eta: float = 1.0
    inference_temp: float = 0.5
    auto_temp: float = 0.5
    window_deg: float = 125.0
    max_batch: int = 0  # UNet batch per call; 0 = automatic from free memory
    dtype: str = "auto"  # auto | fp32 | fp16 | bf16 (auto: fp16 on CUDA, fp32 elsewhere)
