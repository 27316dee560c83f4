"""One loader for every way Zero-1-to-3 weights arrive: a hub id, a diffusers folder, or an LDM checkpoint.

- hub id (``kxic/zero123-xl``, ``kxic/zero123-105000``, ``kxic/zero123-165000``,
  ``ashawkey/zero123-xl-diffusers``): fetched into the Hugging Face cache with ``snapshot_download``
  (only the six component folders; a complete cached copy is used without asking the network; honours
  ``HF_HUB_OFFLINE``; an unreachable hub is one error at once, not the client's retries), then loaded as a folder;
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
    kind, path = check_model(source, cache_dir)
    if kind == "folder":
        model = load_folder(path)
    elif kind == "checkpoint":
        from .checkpoint import zero123_from_ldm_checkpoint

        log.info("converting %s in memory (save it once with `img2mesh convert %s OUT` to load faster)", path, path)
        model = zero123_from_ldm_checkpoint(path)
    else:
        model = load_folder(path if path is not None else _download(str(source), cache_dir))
    return model.to(device=device, dtype=dtype)


def check_model(source: str | os.PathLike = DEFAULT_MODEL, cache_dir=None) -> tuple[str, Path | None]:
    """What ``source`` is, checked without loading anything: ("folder", path) for a complete diffusers
    folder, ("checkpoint", path) for a weight file, ("hub", snapshot folder) for a hub id already in the
    cache, ("hub", None) for one to download (the hub was reached). Anything else raises the error a user
    can act on: an incomplete folder, a missing path, a hub id that is neither cached nor downloadable."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        check_folder(path)
        return "folder", path
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise InputError(f"{path} is not a model: give a diffusers folder, a hub id or an LDM checkpoint "
                             f"({', '.join(CHECKPOINT_SUFFIXES)})")
        return "checkpoint", path
    if not looks_like_hub_id(str(source)):
        raise InputError(f"model {str(source)!r} is neither an existing folder or checkpoint file nor a hub id "
                         f"like {DEFAULT_MODEL}: check the --model path")
    return "hub", find_hub_model(str(source), cache_dir)


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and "\\" not in source


def missing_weights_error(repo_id: str, why: str) -> ResourceError:
    from huggingface_hub import constants

    return ResourceError(
        f"Zero-1-to-3 weights {repo_id} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: "
        f"download them with `hf download {repo_id}` where there is internet (and copy the cache here), or pass "
        "--model PATH for a local diffusers folder (convert an original .ckpt into one with "
        "`img2mesh convert CKPT OUT`)")


def cached_snapshot(repo_id: str, cache_dir=None) -> Path | None:
    """The cached snapshot folder of a hub repo when every component is in it (no network), else None."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or a cache folder it cannot read
        return None
    return path if all((path / c).is_dir() and any((path / c).iterdir()) for c in COMPONENTS) else None


def hub_unreachable(repo_id: str, timeout: float = 10.0) -> str | None:
    """Why the hub cannot serve ``repo_id`` (one request, no retries), or None when it can."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    url = f"{constants.ENDPOINT}/api/models/{repo_id}"
    try:
        response = get_session().head(url, timeout=timeout)
    except Exception as e:  # DNS, refused, timeout: the huggingface_hub client's own retries would take ~30 s
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{constants.ENDPOINT} cannot be reached ({type(e).__name__}{': ' + first[:100] if first else ''})"
    if response.status_code >= 400:
        return f"the hub answered {response.status_code} for {repo_id} (a typo, or a gated or private repository)"
    return None


def hub_files(repo_id: str) -> list[str] | None:
    """The files to fetch (configs + one weight file per component), or None when the hub can't be asked."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        listing = HfApi().list_repo_files(repo_id)
    except Exception as e:  # no such repo, rate limits: snapshot_download reports it better
        log.debug("could not list %s: %s", repo_id, e)
        return None
    files = [f for f in listing if f == "model_index.json" or (f.split("/")[0] in COMPONENTS and f.endswith(".json"))]
    for component in COMPONENTS:
        weights = [f"{component}/{name}" for name in WEIGHT_PREFERENCE if f"{component}/{name}" in listing]
        files.extend(weights[:1])  # the safetensors file when there is one, never both formats
    return files


def find_hub_model(repo_id: str, cache_dir=None) -> Path | None:
    """The cached snapshot folder of a hub repo, or None when it must be downloaded and the hub answers;
    raises when it is neither cached nor downloadable (offline, hub unreachable)."""
    from huggingface_hub import constants

    from img2mesh.data.scenes import offline

    cached = cached_snapshot(repo_id, cache_dir)
    if cached is not None:
        return cached
    if constants.HF_HUB_OFFLINE or offline():
        raise missing_weights_error(repo_id, "downloads are off (HF_HUB_OFFLINE / IMG2MESH_OFFLINE is set)")
    unreachable = hub_unreachable(repo_id)
    if unreachable:
        raise missing_weights_error(repo_id, unreachable)
    return None


def download_from_hub(repo_id: str, cache_dir=None) -> Path:
    """Find in the cache (no network) or fetch the component folders of a hub repo; return the snapshot folder."""
    cached = find_hub_model(repo_id, cache_dir)
    return cached if cached is not None else _download(repo_id, cache_dir)


def _download(repo_id: str, cache_dir=None) -> Path:
    from huggingface_hub import snapshot_download

    log.info("downloading %s from the Hugging Face hub (once, into its cache)", repo_id)
    patterns = hub_files(repo_id) or ["model_index.json", *(f"{c}/*" for c in COMPONENTS)]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir))
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise missing_weights_error(repo_id, f"the download failed ({type(e).__name__}"
                                             f"{': ' + reason if reason else ''})") from None


def check_folder(path: Path) -> None:
    missing = [c for c in COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise ResourceError(f"{path} is not a complete Zero-1-to-3 folder: it lacks {', '.join(f'{m}/' for m in missing)}; "
                            "download it again or convert a .ckpt with `img2mesh convert CKPT OUT`")


def load_folder(path: Path) -> Zero123:
    """Load a diffusers-format Zero-1-to-3 folder on the CPU in fp32 (the caller moves it)."""
    check_folder(path)
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
