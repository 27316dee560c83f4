"""Zero-1-to-3's `cc_projection`: one Linear from [CLIP embedding, pose vector] to the UNet's context size.

In the hub conversions (`kxic/zero123-xl` ...) the class is named ``CCProjection``, its weights are
``projection.weight`` [768, 772] and ``projection.bias`` [768], and its ``config.json`` often lacks the sizes
(the original class did not register them), so :func:`load_cc_projection` reads them from the weight shapes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from img2mesh.data.errors import ResourceError

from .weights import read_state_dict

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin")


class CCProjection(ModelMixin, ConfigMixin):
    """context [B, 1, out_channel] = projection(cat(clip_embedding [B, 1, P], pose [B, 1, 4]))."""

    @register_to_config
    def __init__(self, in_channel: int = 772, out_channel: int = 768):
        super().__init__()
        self.projection = torch.nn.Linear(in_channel, out_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == self.projection.in_features, (
            f"cc_projection expects [..., {self.projection.in_features}], got {tuple(x.shape)}")
        return self.projection(x)


def load_cc_projection(folder: str | Path, dtype: torch.dtype = torch.float32) -> CCProjection:
    """Load a saved ``CCProjection`` folder, taking its sizes from the weights when the config lacks them."""
    folder = Path(folder)
    path = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    if path is None:
        raise ResourceError(f"{folder} holds no cc_projection weights (expected one of {', '.join(WEIGHT_NAMES)}); "
                            "download or convert the model again")
    state = read_state_dict(path)
    if "projection.weight" not in state or "projection.bias" not in state:
        raise ResourceError(f"{path} is not a cc_projection: it lacks projection.weight/projection.bias "
                            f"(has {sorted(state)[:4]}); download or convert the model again")
    out_channel, in_channel = state["projection.weight"].shape
    config_path = folder / "config.json"
    if config_path.is_file():  # sizes in the config, where present, must agree with the weights
        config = json.loads(config_path.read_text())
        for key, size in (("in_channel", in_channel), ("out_channel", out_channel)):
            if key in config and int(config[key]) != size:
                raise ResourceError(f"{config_path} says {key}={config[key]} but the weights have {size}; "
                                    "download or convert the model again")
    module = CCProjection(in_channel=in_channel, out_channel=out_channel)
    module.load_state_dict({k: state[k] for k in ("projection.weight", "projection.bias")}, strict=True)
    # nn.Module.to: diffusers' ModelMixin.to warns about fp32-only modules even when there are none
    return torch.nn.Module.to(module, dtype=dtype).eval()
