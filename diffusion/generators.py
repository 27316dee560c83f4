"""Which generator a model is, and loading / checking either kind: the model says what it is.

- Zero-1-to-3 (hub id, diffusers folder, LDM ``.ckpt``): ViewFusion or independent views (generate.py);
- SyncDreamer (a folder from ``img2mesh convert`` whose config.json says ``"generator": "syncdreamer"``, the
  original ``.ckpt`` with its CLIP archive, or a hub repository holding both): syncdreamer/generate.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import DiffusionConfig, with_generator_defaults


def generator_of(source: str | os.PathLike) -> str:
    """"syncdreamer" or "zero123" for a model source, without loading its networks."""
    from .syncdreamer.loading import is_syncdreamer

    return "syncdreamer" if is_syncdreamer(source) else "zero123"


def generator_of_model(model) -> str:
    """The generator of a loaded model (SyncDreamer's config names it; a Zero-1-to-3 bundle has none)."""
    return getattr(getattr(model, "config", None), "generator", "zero123")


def load_model(source: str | os.PathLike, device=None, dtype=None, clip: str | os.PathLike | None = None):
    """Load either generator's model (``clip``: the CLIP archive of an original SyncDreamer checkpoint)."""
    if generator_of(source) == "syncdreamer":
        from .syncdreamer.loading import load_syncdreamer

        return load_syncdreamer(source, clip=clip or None, device=device, dtype=dtype)
    from .loading import load_zero123

    return load_zero123(source, device=device, dtype=dtype)


def check_model(source: str | os.PathLike, clip: str | os.PathLike | None = None) -> str:
    """Raise the error a user can act on when ``source`` cannot be loaded (checked before any work, as far
    as it can be without loading); returns its generator. ``clip``: a SyncDreamer checkpoint's CLIP archive."""
    generator = generator_of(source)
    if generator == "zero123":
        from .loading import check_model as check_zero123

        check_zero123(source)
        return generator
    from huggingface_hub import constants

    from img2mesh.data.scenes import offline

    from .syncdreamer.loading import check_source

    # a hub repository not in the cache yet is fetched when online: only a local source or an offline hub can fail now
    if Path(os.path.expanduser(str(source))).exists() or constants.HF_HUB_OFFLINE or offline():
        check_source(source, clip or None)
    return generator


def check_settings(cfg: DiffusionConfig, generator: str | None = None) -> list[str]:
    """The views settings checked for the model's generator before any work: raises one InputError line for
    what cannot run, returns notes worth showing (e.g. a SyncDreamer step count that runs more steps).
    For the config loader and the views stage alike."""
    generator = generator or generator_of(cfg.model)
    if generator == "syncdreamer":
        from .syncdreamer.generate import check_config

        return check_config(cfg)
    from .config import check_diffusion_config

    check_diffusion_config(with_generator_defaults(cfg, "zero123"))
    return []
