"""img2mesh.diffusion: Zero-1-to-3 models and the ViewFusion multi-view sampler (imports only img2mesh.data).

    model = load_zero123("kxic/zero123-xl", device="cuda")          # hub id, diffusers folder or LDM .ckpt
    views = generate_views(DiffusionConfig(), prepared, model=model, seed=0)
    convert_checkpoint("zero123-xl.ckpt", "zero123-xl-diffusers")   # `img2mesh convert CKPT OUT [--original-config]`
    model = load_model(source)   # Zero-1-to-3 or SyncDreamer (img2mesh.diffusion.syncdreamer): the model says which

Everything but the config is imported on first use: diffusers/transformers take seconds to import, and the
CLI reads DiffusionConfig on every start.
"""
from importlib import import_module

from .config import DiffusionConfig

_LAZY = {"Zero123": ".zero123", "load_zero123": ".loading", "convert_checkpoint": ".checkpoint",
         "generate_views": ".generate", "build_random_zero123": ".zero123",
         "load_model": ".generators", "generator_of": ".generators"}

__all__ = ["DiffusionConfig", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
