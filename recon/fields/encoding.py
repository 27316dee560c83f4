"""Position encodings for the NeuS SDF network: frequencies (NeRF/NeuS) and a multi-resolution hash grid.

The hash grid is instant-NGP's: L levels with resolutions growing geometrically from ``base_resolution`` to
``finest_resolution``, each a table of 2^log2_table feature vectors indexed by a spatial hash (or densely when
the level's grid fits in the table), trilinearly interpolated. :func:`make_hash_grid` returns tinycudann's
fused version when it is importable and the device is CUDA, else the pure-torch one below (CPU or any GPU).
"""
from __future__ import annotations

import math

import torch
from torch import nn

# instant-NGP's spatial-hash primes (the first is 1 so the x coordinate stays coherent in memory).
_PRIMES = (1, 2654435761, 805459861)


class FrequencyEncoding(nn.Module):
    """x -> [x, sin(2^k x), cos(2^k x) for k < n_frequencies]; [N, d] -> [N, d * (1 + 2 n)]."""

    def __init__(self, in_dim: int = 3, n_frequencies: int = 6, include_input: bool = True):
        super().__init__()
        self.in_dim, self.n_frequencies, self.include_input = in_dim, n_frequencies, include_input
        self.register_buffer("freqs", 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * n_frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == self.in_dim, f"expected [..., {self.in_dim}], got {tuple(x.shape)}"
        scaled = x[..., None, :] * self.freqs[:, None]  # [N, n_freq, d]
        parts = [x] if self.include_input else []
        parts += [torch.sin(scaled).flatten(-2), torch.cos(scaled).flatten(-2)]
        return torch.cat(parts, dim=-1)


def hash_grid_resolutions(n_levels: int, base_resolution: int, finest_resolution: int) -> tuple[list[int], float]:
    """Per-level grid resolutions and the per-level growth factor b (instant-NGP eq. 2-3)."""
    b = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / max(1, n_levels - 1))
    return [int(math.floor(base_resolution * b**level)) for level in range(n_levels)], b


class HashGridEncoding(nn.Module):
    """Pure-torch multi-resolution hash encoding of points in [0, 1]^3: [N, 3] -> [N, n_levels * n_features]."""

    def __init__(self, n_levels: int = 16, n_features: int = 2, log2_table: int = 19, base_resolution: int = 16,
                 finest_resolution: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        self.n_levels, self.n_features, self.table_size = n_levels, n_features, 2**log2_table
        resolutions, self.per_level_scale = hash_grid_resolutions(n_levels, base_resolution, finest_resolution)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        # A level whose (res + 1)^3 vertices fit in the table is indexed densely (no collisions).
        dense = [(r + 1) ** 3 <= self.table_size for r in resolutions]
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        self.embeddings = nn.Parameter(torch.empty(n_levels, self.table_size, n_features).uniform_(-init_scale,
                                                                                                    init_scale))
        corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.long)
        self.register_buffer("corners", corners, persistent=False)  # [8, 3]
        self.out_dim = n_levels * n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        assert x.shape == (n, 3), f"expected [N, 3] in [0, 1], got {tuple(x.shape)}"
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.resolutions[None, :, None]  # [N, L, 3]
        base = pos.floor().clamp(max=self.resolutions[None, :, None] - 1)
        frac = pos - base  # [N, L, 3]
        vert = base.long()[:, :, None, :] + self.corners  # [N, L, 8, 3]
        side = self.resolutions.long() + 1  # [L]
        dense_idx = vert[..., 0] + side[:, None] * (vert[..., 1] + side[:, None] * vert[..., 2])
        hashed = (vert[..., 0] * _PRIMES[0]) ^ (vert[..., 1] * _PRIMES[1]) ^ (vert[..., 2] * _PRIMES[2])
        idx = torch.where(self.dense[None, :, None], dense_idx, hashed) % self.table_size  # [N, L, 8]
        idx = idx + torch.arange(self.n_levels, device=x.device)[:, None] * self.table_size
        feats = self.embeddings.reshape(-1, self.n_features)[idx]  # [N, L, 8, F]
        c = self.corners.to(x.dtype)  # [8, 3]
        w = (c * frac[:, :, None, :] + (1 - c) * (1 - frac[:, :, None, :])).prod(dim=-1)  # [N, L, 8]
        return (feats * w[..., None]).sum(dim=2).reshape(n, self.out_dim)


class TcnnHashGrid(nn.Module):
    """tinycudann's fused hash grid (CUDA only), same hyper-parameters; outputs float32 like the torch one."""

    def __init__(self, tcnn, n_levels, n_features, log2_table, base_resolution, finest_resolution):
        super().__init__()
        _, b = hash_grid_resolutions(n_levels, base_resolution, finest_resolution)
        self.encoding = tcnn.Encoding(3, {"otype": "HashGrid", "n_levels": n_levels,
                                          "n_features_per_level": n_features, "log2_hashmap_size": log2_table,
                                          "base_resolution": base_resolution, "per_level_scale": b})
        self.out_dim = n_levels * n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoding(x.clamp(0.0, 1.0)).float()


def tcnn_module(device) -> object | None:
    """tinycudann, when it is importable and ``device`` is CUDA; else None (feature-detected, never assumed)."""
    if torch.device(device).type != "cuda":
        return None
    try:
        import tinycudann
    except Exception:  # ImportError, or a build for another GPU / CUDA raising at import
        return None
    return tinycudann


def make_hash_grid(n_levels: int, n_features: int, log2_table: int, base_resolution: int, finest_resolution: int,
                   device="cpu", use_tcnn: bool = True) -> nn.Module:
    """The fused tinycudann grid on CUDA when available, else :class:`HashGridEncoding`.

    The two store their tables differently, so a field trained with one reloads with the same one
    (``use_tcnn`` is saved in the field's config).
    """
    tcnn = tcnn_module(device) if use_tcnn else None
    if tcnn is not None:
        return TcnnHashGrid(tcnn, n_levels, n_features, log2_table, base_resolution, finest_resolution)
    return HashGridEncoding(n_levels, n_features, log2_table, base_resolution, finest_resolution)
