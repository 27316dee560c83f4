"""img2mesh.diffusion: Zero-1-to-3 models and the ViewFusion multi-view sampler (imports only img2mesh.data).

    model = load_zero123("kxic/zero123-xl", device="cuda")          # hub id, diffusers folder or LDM .ckpt
    views = generate_views(DiffusionConfig(), prepared, model=model, seed=0)
    convert_checkpoint("zero123-xl.ckpt", "zero123-xl-diffusers")   # `img2mesh convert CKPT OUT`
"""
from .architecture import build_random_zero123
from .checkpoint import convert_checkpoint
from .config import DiffusionConfig
from .generate import generate_views
from .loading import load_zero123
from .zero123 import Zero123

__all__ = ["DiffusionConfig", "Zero123", "load_zero123", "convert_checkpoint", "generate_views",
           "build_random_zero123"]
