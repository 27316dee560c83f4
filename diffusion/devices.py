"""Precision choices for the Zero-1-to-3 models and how many UNet rows fit in one call (the device itself is
resolved by img2mesh.data.devices)."""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

import torch

from img2mesh.data.errors import InputError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
CPU_MAX_BATCH = 8  # CPU throughput stops improving beyond a few rows; keeps peak RAM moderate
MAX_BATCH_CAP = 64
T = TypeVar("T")


def chosen_dtype(dtype: str | torch.dtype | None, device: torch.device) -> tuple[torch.dtype, str]:
    """(the precision, why) for a ``diffusion.dtype`` on ``device``, saying nothing: ``None``/``"auto"`` ->
    fp16 on CUDA, bf16 on a CPU with native bf16, else fp32 (precision.auto_dtype); otherwise the named one."""
    if isinstance(dtype, torch.dtype):
        return dtype, ""
    if dtype is None or dtype == "auto":
        from .precision import auto_dtype

        return auto_dtype(device)
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, fp32, fp16 or bf16")
    return DTYPES[dtype], ""


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """:func:`chosen_dtype`, logging what ``auto`` chose and warning of fp16 on a CPU."""
    resolved, why = chosen_dtype(dtype, device)
    if isinstance(dtype, torch.dtype):
        return resolved
    if dtype is None or dtype == "auto":
        from .precision import DTYPE_NAMES

        log.info("diffusion.dtype=auto: %s (%s)", DTYPE_NAMES[resolved], why)
        return resolved
    if device.type == "cpu" and resolved == torch.float16:
        log.warning("fp16 on the CPU is slow and not more accurate; bf16 or fp32 are better choices there")
    return resolved


def auto_max_batch(device: torch.device, dtype: torch.dtype, latent_hw: tuple[int, int], base_channels: int) -> int:
    """How many UNet rows to run per call when ``max_batch`` is 0 (automatic).

    On CUDA: half the free memory divided by a per-row activation estimate (an SD-1.x UNet at 32x32 latents
    needs roughly 60 MB of activations per row in fp16, growing with the latent area and width; attention
    scores are counted as if materialised, which SDPA's math fallback does). Elsewhere a moderate constant.
    A CUDA out-of-memory error during sampling halves the batch and retries, so this need not be exact.
    """
    if device.type != "cuda":
        return CPU_MAX_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    h, w = latent_hw
    elem = torch.finfo(dtype).bits // 8
    area = h * w
    activations = 60e6 * (area / 1024) * (base_channels / 320) * (elem / 2)
    attention = 8 * area * area * elem  # one layer's [heads, tokens, tokens] scores
    per_row = activations + attention
    return int(max(1, min(MAX_BATCH_CAP, 0.5 * free // per_row)))


def halve_on_oom(run: Callable[[int], T], batch: int, what: str = "UNet batch") -> tuple[T, int]:
    """``run(batch)``, retried with half the batch after each CUDA out-of-memory error until it fits (the
    error is raised again at batch 1). Returns the result and the batch that fitted, for the next calls."""
    batch = max(1, int(batch))
    while True:
        try:
            return run(batch), batch
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            log.warning("CUDA out of memory: %s reduced to %d", what, batch)
            torch.cuda.empty_cache()
