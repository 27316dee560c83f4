"""The random draws of one SyncDreamer sampling run, drawn from a generator or given explicitly.

A run draws, in this order (the original's order): the input latent's posterior noise [1, 4, h, w], the
initial noise x_T [16, 4, h, w] (row k = target view k), then one z [16, 4, h, w] per executed step except the
last, also at eta 0 (the original draws it there too and scales it by sigma = 0), so a seeded run at any eta
consumes the generator identically. ``diffusion.noise=PATH`` names a torch file holding the same tensors under
the keys ``x_T``, ``posterior_noise`` and, for eta > 0, ``step_noise`` [executed steps - 1, 16, 4, h, w].
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from img2mesh.data.errors import InputError

KEYS = ("x_T", "posterior_noise", "step_noise")


@dataclass
class SyncNoise:
    """Explicit draws for one instance (float32, on the CPU until used)."""

    x_T: torch.Tensor  # [16, 4, h, w]
    posterior_noise: torch.Tensor  # [1, 4, h, w]
    step_noise: torch.Tensor | None = None  # [S' - 1, 16, 4, h, w]; None: not needed (eta 0)

    def check(self, n_views: int, latent_shape: tuple[int, int, int], executed_steps: int, eta: float,
              where: str = "diffusion.noise") -> None:
        """One-line errors for draws that do not fit the model and the schedule."""
        c, h, w = latent_shape
        want = {"x_T": (n_views, c, h, w), "posterior_noise": (1, c, h, w)}
        if eta > 0 or self.step_noise is not None:
            want["step_noise"] = (executed_steps - 1, n_views, c, h, w)
        for key, shape in want.items():
            value = getattr(self, key)
            if value is None:
                raise InputError(f"{where} has no {key!r}: with eta {eta} it needs {key} of shape {list(shape)}")
            if tuple(value.shape) != shape:
                raise InputError(f"{where}: {key} is {list(value.shape)}, expected {list(shape)} "
                                 f"({executed_steps} executed steps, {n_views} views, latents {c}x{h}x{w})")


def load_noise(path: str | os.PathLike) -> SyncNoise:
    """Read a ``diffusion.noise`` file (a dict of tensors saved with ``torch.save``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"diffusion.noise file {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"diffusion.noise file {path} is not a torch file of tensors ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), (torch.Tensor, type(None))) for k in KEYS):
        raise InputError(f"diffusion.noise file {path} must hold a dict of tensors with keys {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InputError(f"diffusion.noise file {path} has unknown keys {unknown}: expected {', '.join(KEYS)}")
    missing = [k for k in KEYS[:2] if data.get(k) is None]
    if missing:
        raise InputError(f"diffusion.noise file {path} has no {missing[0]!r}")
    return SyncNoise(*(None if data.get(k) is None else data[k].float() for k in KEYS))


class NoiseSource:
    """Hands out the draws of one run in order: explicit tensors, else ``randn`` from ``generator``."""

    def __init__(self, explicit: SyncNoise | None, generator: torch.Generator | None, device: torch.device):
        self.explicit, self.generator, self.device = explicit, generator, device

    def draw(self, shape) -> torch.Tensor:
        return randn_tensor(tuple(shape), generator=self.generator, device=self.device, dtype=torch.float32)

    def posterior(self, shape) -> torch.Tensor:  # [B, 4, h, w]
        return self.explicit.posterior_noise.to(self.device) if self.explicit else self.draw(shape)

    def initial(self, shape) -> torch.Tensor:  # [B, 16, 4, h, w]
        return self.explicit.x_T.to(self.device).reshape(shape) if self.explicit else self.draw(shape)

    def step(self, i: int, shape) -> torch.Tensor | None:
        """z for executed step ``i`` (never called for the last step); None when an explicit run at eta 0 has
        no step noise (sigma is 0 there, so z does not matter)."""
        if self.explicit is None:
            return self.draw(shape)
        if self.explicit.step_noise is None:
            return None
        return self.explicit.step_noise[i].to(self.device).reshape(shape)
