"""Which torch device a run uses: the one resolver the diffusion, recon and app stages share."""
from __future__ import annotations

import torch

from .errors import InputError, UnavailableError


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> cuda if present, else mps, else cpu; anything else as named.

    Always a ``torch.device``, so callers compare ``.type`` rather than strings. Asking for a device that is
    not here is an :class:`UnavailableError`; a name torch does not know is an :class:`InputError`.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"unknown device {device!r} ({e}): use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnavailableError(f"device {str(device)!r} was asked for but this PyTorch build sees no CUDA GPU; "
                               "use device=cpu")
    if device.type == "mps" and not mps_available():
        raise UnavailableError("device 'mps' was asked for but is not available here; use device=cpu")
    return device
