"""One loader for every way Zero-1-to-3 weights arrive: a hub id, a diffusers folder, or an LDM checkpoint.

- hub id (``kxic/zero123-xl``, ``kxic/zero123-105000``, ``kxic/zero123-165000``,
  ``ashawkey/zero123-xl-diffusers``): fetched into the Hugging Face cache with ``snapshot_download``
  (only the six component folders; honours ``HF_HUB_OFFLINE``), then loaded as a folder;
- a folder with ``unet/ vae/ image_encoder/ feature_extractor/ cc_projection/ scheduler/``;
- an original ``.ckpt`` / ``.safetensors`` file: converted in memory (``img2mesh convert`` saves the result).
Every user-fixable problem is one :class:`ResourceError` / :class:`InputError` line saying what to do.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import Img2MeshError, InputError, ResourceError

from .devices import resolve_dtype
from .weights import corrupt_file_error
from .zero123 import COMPONENTS, Zero123

log = logging.getLogger(__name__)

DEFAULT_MODEL = "kxic/zero123-xl"
CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
WEIGHT_PREFERENCE = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                     "diffusion_pytorch_model.bin", "pytorch_model.bin")


def load_zero123(source: str | os.PathLike = DEFAULT_MODEL, device=None, dtype=None, cache_dir=None) -> Zero123:
    """Load a :class:`Zero123` bundle from a hub id, a diffusers folder or an LDM checkpoint file.

    device: ``None``/``"auto"`` picks cuda > mps > cpu. dtype: ``None``/``"auto"`` is fp16 on CUDA and fp32
    elsewhere; or ``"fp32"``/``"fp16"``/``"bf16"``/a ``torch.dtype``. cache_dir: Hugging Face cache override.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        model = load_folder(path)
    elif path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise InputError(f"{path} is not a model: give a diffusers folder, a hub id or an LDM checkpoint "
                             f"({', '.join(CHECKPOINT_SUFFIXES)})")
        from .checkpoint import zero123_from_ldm_checkpoint

        log.info("converting %s in memory (save it once with `img2mesh convert %s OUT` to load faster)", path, path)
        model = zero123_from_ldm_checkpoint(path)
    elif looks_like_hub_id(str(source)):
        model = load_folder(download_from_hub(str(source), cache_dir))
    else:
        raise InputError(f"model {str(source)!r} is neither an existing folder or checkpoint file nor a hub id "
                         f"like {DEFAULT_MODEL}: check the --model path")
    return model.to(device=device, dtype=dtype)


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and "\\" not in source


def hub_files(repo_id: str) -> list[str] | None:
    """The files to fetch (configs + one weight file per component), or None when the hub can't be asked."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        listing = HfApi().list_repo_files(repo_id)
    except Exception as e:  # offline, no such repo, rate limits: snapshot_download reports it better
        log.debug("could not list %s: %s", repo_id, e)
        return None
    files = [f for f in listing if f == "model_index.json" or (f.split("/")[0] in COMPONENTS and f.endswith(".json"))]
    for component in COMPONENTS:
        weights = [f"{component}/{name}" for name in WEIGHT_PREFERENCE if f"{component}/{name}" in listing]
        files.extend(weights[:1])  # the safetensors file when there is one, never both formats
    return files


def download_from_hub(repo_id: str, cache_dir=None) -> Path:
    """Fetch (or find in the cache) the component folders of a hub repo; return the snapshot folder."""
    from huggingface_hub import snapshot_download

    patterns = hub_files(repo_id) or ["model_index.json", *(f"{c}/*" for c in COMPONENTS)]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir))
    except Exception as e:
        reason = str(e).strip().splitlines()[0].split(". ")[0][:120] if str(e).strip() else type(e).__name__
        raise ResourceError(
            f"Zero-1-to-3 weights {repo_id!r} are not in the Hugging Face cache and could not be downloaded "
            f"({type(e).__name__}: {reason}): run `huggingface-cli download {repo_id}` where there is internet "
            f"(or copy the cache), or pass --model PATH to a downloaded folder or .ckpt"
        ) from None


def load_folder(path: Path) -> Zero123:
    """Load a diffusers-format Zero-1-to-3 folder on the CPU in fp32 (the caller moves it)."""
    missing = [c for c in COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise ResourceError(f"{path} is not a complete Zero-1-to-3 folder: it lacks {', '.join(f'{m}/' for m in missing)}; "
                            "download it again or convert a .ckpt with `img2mesh convert CKPT OUT`")
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    from .ccprojection import load_cc_projection
    from .zero123 import clip_image_processor

    def processor(folder):
        return type(clip_image_processor()).from_pretrained(folder)

    loaders = {
        "unet": lambda p: UNet2DConditionModel.from_pretrained(p, low_cpu_mem_usage=False),
        "vae": lambda p: AutoencoderKL.from_pretrained(p, low_cpu_mem_usage=False),
        "image_encoder": lambda p: CLIPVisionModelWithProjection.from_pretrained(p, attn_implementation="sdpa"),
        "feature_extractor": processor,
        "cc_projection": load_cc_projection,
        "scheduler": lambda p: DDIMScheduler.from_pretrained(p),
    }
    parts = {}
    for name, load in loaders.items():
        try:
            parts[name] = load(path / name)
        except Img2MeshError:
            raise
        except Exception as e:  # diffusers/transformers/safetensors raise many types for a bad or short file
            raise corrupt_file_error(path / name, e) from None
    unet = parts["unet"]
    if unet.config.in_channels != 8:
        raise ResourceError(f"{path / 'unet'} has {unet.config.in_channels} input channels, Zero-1-to-3 has 8: "
                            "this is not a Zero-1-to-3 model")
    return Zero123(**parts, device=torch.device("cpu"), dtype=torch.float32)
