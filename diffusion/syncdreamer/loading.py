"""Every way SyncDreamer weights arrive -> :class:`SyncDreamer`.

- a folder written by ``img2mesh convert`` (``config.json`` saying ``"generator": "syncdreamer"`` +
  ``model.safetensors``);
- the original checkpoint file with OpenAI's CLIP archive (``clip=``, else ``ViT-L-14.pt`` beside it),
  converted in memory;
- a hub repository holding both files under their original names (``syncdreamer-pretrain.ckpt``,
  ``ViT-L-14.pt``): ``camenduru/SyncDreamer`` (a model repository) and
  ``jianfuzhang233/controlnet_syncdreamer`` (a dataset repository) hold them at their top level. Fetched
  into the Hugging Face cache once; honours ``HF_HUB_OFFLINE``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import Img2MeshError, InputError, ResourceError

from ..devices import resolve_dtype
from ..weights import corrupt_file_error, torch_load_weights_only
from .model import CONFIG_NAME, GENERATOR, WEIGHTS_NAME, SyncDreamer, SyncDreamerConfig

log = logging.getLogger(__name__)

CHECKPOINT_NAME, CLIP_NAME = "syncdreamer-pretrain.ckpt", "ViT-L-14.pt"
HUB_REPOS = {"camenduru/SyncDreamer": "model", "jianfuzhang233/controlnet_syncdreamer": "dataset"}


def is_syncdreamer(source: str | os.PathLike) -> bool:
    """Whether ``source`` names SyncDreamer weights (a converted folder, an original checkpoint or a known
    hub repository), without loading the networks."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        config = path / CONFIG_NAME
        try:
            return config.is_file() and json.loads(config.read_text()).get("generator") == GENERATOR
        except (OSError, ValueError):
            return False
    if path.is_file():
        return checkpoint_is_syncdreamer(path)
    return str(source) in HUB_REPOS


def checkpoint_is_syncdreamer(path: Path) -> bool:
    """A weight file with the spatial volume's tensors (read lazily: the tensors are memory-mapped)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                return any(k.startswith("spatial_volume.") for k in f.keys())
        except Exception:  # not a readable safetensors file: the loader reports it properly
            return False
    try:
        obj = torch_load_weights_only(path)
    except Img2MeshError:
        return False
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    return isinstance(state, dict) and any(str(k).startswith("spatial_volume.") for k in state)


def load_syncdreamer(source: str | os.PathLike, clip: str | os.PathLike | None = None, device=None, dtype=None,
                     original_config=None, volume_size: int = 32, frustum_depth: int = 48,
                     cache_dir=None) -> SyncDreamer:
    """Load SyncDreamer from a converted folder, an original checkpoint (+ ``clip``) or a hub repository.

    device: None/"auto" picks cuda > mps > cpu; dtype: None/"auto" is fp16 on CUDA, fp32 elsewhere.
    ``original_config``, ``volume_size``, ``frustum_depth`` apply to an original checkpoint (as ``convert``).
    """
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        return load_folder(path, device=device, dtype=dtype)
    if not path.is_file():
        if str(source) not in HUB_REPOS and not _looks_like_hub_id(str(source)):
            raise InputError(f"SyncDreamer model {str(source)!r} is neither a folder, a checkpoint file nor a hub id")
        path, hub_clip = download_from_hub(str(source), cache_dir)
        clip = clip if clip is not None else hub_clip
    from .checkpoint import clip_archive_for, syncdreamer_from_checkpoint

    clip = clip_archive_for(path, clip)
    log.info("converting %s in memory (save it once with `img2mesh convert %s OUT --clip %s` to load faster)",
             path, path, clip)
    model = syncdreamer_from_checkpoint(path, clip, original_config, volume_size, frustum_depth)
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype, resolve_device(device)))


def check_source(source: str | os.PathLike, clip: str | os.PathLike | None = None, cache_dir=None) -> None:
    """Raise the error a user can act on when ``source`` cannot be loaded, without loading it: an incomplete
    folder, a checkpoint without its CLIP archive, a hub repository neither cached nor reachable offline."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise ResourceError(f"{path} is not a SyncDreamer model folder (it lacks {name}): convert the "
                                    "checkpoint with `img2mesh convert CKPT OUT --clip ViT-L-14.pt`")
        SyncDreamerConfig.load(path / CONFIG_NAME)
    elif path.is_file():
        from .checkpoint import clip_archive_for

        archive = clip_archive_for(path, clip)
        if not archive.is_file():
            raise InputError(f"CLIP archive {archive} does not exist: give OpenAI's ViT-L-14.pt with --clip")
    else:
        download_from_hub(str(source), cache_dir, local_only=True)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def download_from_hub(repo_id: str, cache_dir=None, local_only: bool = False) -> tuple[Path, Path]:
    """The checkpoint and CLIP archive of a hub repository, from the cache or fetched once (``local_only``:
    from the cache or not at all)."""
    from huggingface_hub import constants, hf_hub_download

    from img2mesh.data.scenes import offline

    repo_type = HUB_REPOS.get(repo_id, "model")
    local_only = bool(local_only or constants.HF_HUB_OFFLINE or offline())
    files = []
    for name in (CHECKPOINT_NAME, CLIP_NAME):
        try:
            files.append(Path(hf_hub_download(repo_id, name, repo_type=repo_type, cache_dir=cache_dir,
                                              local_files_only=local_only)))
        except Exception as e:  # offline and not cached, no such repo or file, network errors
            why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ResourceError(
                f"SyncDreamer's {name} from the hub repository {repo_id} is not available ({why}): download "
                f"{CHECKPOINT_NAME} and {CLIP_NAME} (e.g. `hf download camenduru/SyncDreamer {CHECKPOINT_NAME} "
                f"{CLIP_NAME}`) where there is internet and pass --model CKPT --clip {CLIP_NAME}") from None
    return files[0], files[1]


def load_folder(folder: Path, device=None, dtype=None) -> SyncDreamer:
    """A converted folder, every tensor checked against its config."""
    from safetensors.torch import load_file

    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights.is_file():
        raise ResourceError(f"{folder} is not a SyncDreamer model folder (it needs {CONFIG_NAME} and {WEIGHTS_NAME}): "
                            "convert the checkpoint with `img2mesh convert CKPT OUT --clip ViT-L-14.pt`")
    config = SyncDreamerConfig.load(config_path)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises its own error types for short or damaged files
        raise corrupt_file_error(weights, e) from None
    model = SyncDreamer.empty(config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ResourceError(f"{weights} does not fit {config_path} (missing {result.missing_keys[:3]}, unexpected "
                            f"{result.unexpected_keys[:3]}): convert the model again")
    device = resolve_device(device)
    return model.eval().to(device=device, dtype=resolve_dtype(dtype, device))
