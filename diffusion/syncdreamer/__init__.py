"""SyncDreamer: 16 synchronised views from one image (the network, its loading and conversion here; the
input preparation, cameras and sampler beside them).

    model = load_syncdreamer("syncdreamer-pretrain.ckpt", clip="ViT-L-14.pt")   # or a converted folder / hub repo
    convert_checkpoint("syncdreamer-pretrain.ckpt", "syncdreamer", clip="ViT-L-14.pt")

Heavy imports (diffusers, transformers) happen on first use.
"""
from importlib import import_module

_LAZY = {"SyncDreamer": ".model", "SyncDreamerConfig": ".model", "SyncCondition": ".model",
         "load_syncdreamer": ".loading", "is_syncdreamer": ".loading", "convert_checkpoint": ".checkpoint",
         # the sampling side: input preparation, sampler, explicit draws, the views stage
         "prepare_input": ".inputs", "sample_syncdreamer": ".sampler", "SyncNoise": ".noise", "load_noise": ".noise",
         "synthesize_syncdreamer": ".generate", "generate_syncdreamer_views": ".generate"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
