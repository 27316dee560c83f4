"""SyncDreamer's own settings (the `diffusion.syncdreamer:` section of configs/*.yaml).

The shared keys (`diffusion.steps`, `guidance_scale`, `eta`, `dtype`, `noise`) mean the same as for
Zero-1-to-3; left unset (null), steps and guidance take SyncDreamer's reference values (diffusion/config.py).
"""
from dataclasses import dataclass

from img2mesh.data.settings import number


@dataclass
class SyncDreamerSettings:
    # Object size in the input, in pixels of a 256 px image (other model sizes scale it): the input's alpha
    # bounding box is resized so its longer side is this long, as the authors recommend (200). -1 keeps the
    # image's framing and only pads it square and resizes it (the original script's default).
    crop_size: int = number(200, low=-1)  # (0 is refused by check_diffusion_config)
    batch_view_num: int = number(8, low=1)  # target views per UNet call (memory); the result does not depend on it
    # Instances generated together; the most 3D-consistent one is kept (its score and the others' go in
    # run.json). The original leaves the choice to the eye.
    sample_num: int = number(1, low=1)
    keep_samples: bool = False  # also write every instance's views (views_samples/<k>/)
    clip: str = ""  # OpenAI CLIP archive (ViT-L-14.pt) of an original .ckpt model; "" = the one beside it
