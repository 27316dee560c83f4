"""LPIPS (VGG) without torchvision: the VGG-16 feature stack and LPIPS's linear heads in plain torch.

LPIPS (Zhang et al. 2018): scale the image, take VGG-16's relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
activations, unit-normalise each over channels, square the difference, weight channels with a learned 1x1
conv, average over space and sum over layers. The weights come from two local files, never downloaded here:
- VGG-16 ImageNet weights in torchvision's layout (``vgg16-397923af.pth``, keys ``features.N.weight``),
- LPIPS's linear heads v0.1 (``vgg.pth`` from the lpips package, keys ``linK.model.1.weight``).
Without both, LPIPS is reported as unavailable (never as zero).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
SLICE_ENDS = (4, 9, 16, 23, 30)  # features[:4] -> relu1_2, [4:9] -> relu2_2, ... [23:30] -> relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's input scaling layer
SCALE = (0.458, 0.448, 0.450)
VGG_FILE, LIN_FILE = "vgg16-397923af.pth", "vgg.pth"


def vgg16_features() -> nn.Sequential:
    """VGG-16's convolutional stack with torchvision's module indices (so its state-dict keys match)."""
    layers, in_ch = [], 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = item
    return nn.Sequential(*layers)


class LinearHead(nn.Module):
    """LPIPS's per-layer channel weighting; `model.1` is the conv so the file's keys load as they are."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(p=0.0), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = vgg16_features()
        self.lins = nn.ModuleList(LinearHead(c) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    @classmethod
    def from_files(cls, vgg_path: str | os.PathLike, lin_path: str | os.PathLike) -> "LPIPS":
        """Load both weight files (``weights_only``), checking every key and shape."""
        model = cls()
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
        vgg = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        _load_exact(model.features, vgg, vgg_path)
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
        lin = {f"{k[3]}.{k[5:]}": v for k, v in lin.items()}  # "lin0.model.1.weight" -> "0.model.1.weight"
        _load_exact(model.lins, lin, lin_path)
        return model.eval().requires_grad_(False)

    def _layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, start = [], 0
        for end in SLICE_ENDS:
            x = self.features[start:end](x)
            outs.append(x)
            start = end
        return outs

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: [B, 3, H, W] in [0, 1] -> [B] distances (0 for identical images)."""
        assert a.shape == b.shape and a.shape[1] == 3, f"expected two [B, 3, H, W] batches, got {a.shape} {b.shape}"
        fa = self._layers(((a * 2 - 1) - self.shift) / self.scale)
        fb = self._layers(((b * 2 - 1) - self.shift) / self.scale)
        total = 0.0
        for lin, x, y in zip(self.lins, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((x - y) ** 2).mean(dim=(2, 3))
        return total.view(-1)


def _load_exact(module: nn.Module, state: dict, path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or bad:
        what = f"missing {missing[:3]}" if missing else f"wrong shape for {bad[:3]}"
        raise ValueError(f"{path} is not the expected LPIPS/VGG-16 weights file ({what})")
    module.load_state_dict({k: state[k] for k in expected})


def weight_dirs() -> list[Path]:
    """Where LPIPS weights are looked for: $IMG2MESH_LPIPS_DIR, torch's hub cache, an installed lpips package."""
    dirs = []
    if os.environ.get("IMG2MESH_LPIPS_DIR"):
        dirs.append(Path(os.environ["IMG2MESH_LPIPS_DIR"]))
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
        if spec and spec.origin:
            dirs.append(Path(spec.origin).parent / "weights" / "v0.1")
    except (ImportError, ValueError):
        pass
    return dirs


def find_lpips() -> tuple[LPIPS | None, str]:
    """The LPIPS model if both weight files are on disk, else None and a note saying where to put them."""
    dirs = weight_dirs()
    vgg = next((d / VGG_FILE for d in dirs if (d / VGG_FILE).is_file()), None)
    lin = next((d / LIN_FILE for d in dirs if (d / LIN_FILE).is_file()), None)
    if vgg is None or lin is None:
        return None, (f"LPIPS skipped: put {VGG_FILE} (torchvision VGG-16) and {LIN_FILE} (lpips v0.1) in "
                      f"$IMG2MESH_LPIPS_DIR or {Path(torch.hub.get_dir()) / 'checkpoints'}")
    try:
        return LPIPS.from_files(vgg, lin), f"LPIPS (VGG) from {vgg.parent}"
    except (ValueError, RuntimeError, OSError) as e:
        return None, f"LPIPS skipped: {e}"


def lpips_distance(model: LPIPS, a, b, device: torch.device | str = "cpu") -> float:
    """One pair of [H, W, 3] float images in [0, 1] -> LPIPS distance."""
    ta = torch.as_tensor(a, dtype=torch.float32).permute(2, 0, 1)[None].to(device)
    tb = torch.as_tensor(b, dtype=torch.float32).permute(2, 0, 1)[None].to(device)
    return float(model.to(device)(ta, tb)[0])


def save_weights_like_upstream(model: LPIPS, directory: Path) -> tuple[Path, Path]:
    """Write ``model``'s weights in the two upstream file layouts (used by tests and to export a model)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()}, directory / VGG_FILE)
    torch.save({f"lin{k[0]}.{k[2:]}": v for k, v in model.lins.state_dict().items()}, directory / LIN_FILE)
    return directory / VGG_FILE, directory / LIN_FILE


__all__ = ["LPIPS", "find_lpips", "lpips_distance", "save_weights_like_upstream"]
