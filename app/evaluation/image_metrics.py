"""Per-image metrics on [0, 1] images composited onto white, as SyncDreamer's protocol scores them."""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def _check(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.ndim == 3 and a.shape[2] == 3, f"expected two [H, W, 3] images, got {a.shape} {b.shape}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [H, W, 3] float images in [0, 1] (inf when identical)."""
    _check(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0.0 else -10.0 * np.log10(mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Gaussian-free 7x7 window, scikit-image defaults) over RGB, data range 1."""
    _check(a, b)
    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=2, data_range=1.0))
