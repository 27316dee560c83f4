"""NeuS networks: the SDF MLP with geometric init, the colour MLP, and the learned variance.

Sizes and init follow NeuS as ViewFusion / SyncDreamer run it (docs/reference.md section 5): 8 x 256 SDF MLP,
skip at layer 4, weight norm, Softplus(beta=100), geometric init to a sphere; 4 x 256 colour MLP on
[x, PE(view dir), normal, feature] with a sigmoid; inv_s = exp(10 v).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class SDFNetwork(nn.Module):
    """[N, 3] normalised points -> sdf [N] (normalised units) and a feature [N, feature_dim].

    ``encoding`` maps points to features; its first 3 outputs must be the raw coordinates when
    ``encoding_keeps_input`` (frequency encoding), otherwise the raw coordinates are prepended here.
    """

    def __init__(self, encoding: nn.Module, encoding_keeps_input: bool, hidden: int = 256, layers: int = 8,
                 skip: tuple[int, ...] = (4,), feature_dim: int = 256, init_radius: float = 0.5):
        super().__init__()
        self.encoding, self.keeps_input = encoding, encoding_keeps_input
        d_in = encoding.out_dim + (0 if encoding_keeps_input else 3)
        self.d_in, self.skip = d_in, tuple(skip)
        dims = [d_in] + [hidden] * (layers - 1) + [1 + feature_dim]
        self.linears = nn.ModuleList()
        for i in range(len(dims) - 1):
            out = dims[i + 1] - (d_in if (i + 1) in self.skip else 0)
            lin = nn.Linear(dims[i], out)
            self._geometric_init(lin, i, len(dims) - 2, d_in, init_radius)
            self.linears.append(weight_norm(lin))
        self.act = nn.Softplus(beta=100)

    def _geometric_init(self, lin: nn.Linear, i: int, last: int, d_in: int, radius: float) -> None:
        """SAL/IGR geometric init: the network starts as sdf(x) = |x| - radius.

        Encoded inputs other than xyz (frequencies, hash features) get zero weights in the first and skip
        layers, so they only come into play as training moves those weights.
        """
        with torch.no_grad():
            if i == last:
                nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(lin.in_features), std=1e-4)
                nn.init.constant_(lin.bias, -radius)
                return
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0) / math.sqrt(lin.out_features))
            nn.init.constant_(lin.bias, 0.0)
            if i == 0:
                lin.weight[:, 3:] = 0.0
            elif i in self.skip:
                lin.weight[:, -(d_in - 3):] = 0.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoding(x)
        inp = enc if self.keeps_input else torch.cat([x, enc], dim=-1)  # [N, d_in], xyz first
        h = inp
        for i, lin in enumerate(self.linears):
            if i in self.skip:
                h = torch.cat([h, inp], dim=-1) / math.sqrt(2.0)
            h = lin(h)
            if i < len(self.linears) - 1:
                h = self.act(h)
        return h[:, 0], h[:, 1:]


class ColorNetwork(nn.Module):
    """[x, PE(view dir), normal, feature] -> rgb in (0, 1). Shapes: x, dirs, normal [N, 3]; feature [N, F]."""

    def __init__(self, feature_dim: int, hidden: int = 256, layers: int = 4, view_frequencies: int = 4):
        super().__init__()
        from .encoding import FrequencyEncoding

        self.view_encoding = FrequencyEncoding(3, view_frequencies)
        dims = [3 + self.view_encoding.out_dim + 3 + feature_dim] + [hidden] * (layers - 1) + [3]
        self.linears = nn.ModuleList(weight_norm(nn.Linear(a, b)) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x, dirs, normal, feature) -> torch.Tensor:
        h = torch.cat([x, self.view_encoding(dirs), normal, feature], dim=-1)
        for i, lin in enumerate(self.linears):
            h = lin(h)
            if i < len(self.linears) - 1:
                h = torch.relu(h)
        return torch.sigmoid(h)


class SingleVariance(nn.Module):
    """NeuS's learned sharpness: inv_s = exp(10 v), one scalar for the whole scene."""

    def __init__(self, init: float = 0.3):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return torch.exp(10.0 * self.variance).clamp(1e-6, 1e6)
