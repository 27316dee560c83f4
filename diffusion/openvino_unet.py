"""diffusion.backend=openvino: the Zero-1-to-3 UNet (nearly all of the views' time) run by OpenVINO on the CPU.

    model = load_zero123(...)                      # fp32 torch model
    use_openvino_unet(model, latent_hw=(32, 32), precision="bf16")
    model.predict_noise(...)                       # unchanged callers: model.unet is now an OpenVINOUNet

The torch UNet is converted once by OpenVINO's PyTorch frontend (``openvino.convert_model``) and saved as
OpenVINO IR under ``cache_dir()/openvino/<key>/``; the key hashes the weights, the input shapes (latent size,
channels, context width) and the OpenVINO version, so a later run with the same model only reads the IR. The
batch dimension stays dynamic (ViewFusion's calls vary in size) and the precision is a compile-time hint
(``INFERENCE_PRECISION_HINT``: bf16 where the CPU has it, else f32), so one IR serves both. OpenVINO's compiled
blobs are cached beside it (``CACHE_DIR``). The VAE and CLIP stay in torch (they run once per view).

OpenVINO is optional (``pip install 'img2mesh[openvino]'``). Asking for it without it installed is refused
before any work starts (UnavailableError, exit 4): a user who asked for the faster backend on a CPU run of hours
should not silently get the slower one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from img2mesh.data.errors import InputError, UnavailableError

from .config import BACKENDS

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'img2mesh[openvino]'"


def openvino_module():
    """The ``openvino`` package, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def check_backend(backend: str, device: torch.device | None = None) -> None:
    """One-line errors for a ``diffusion.backend`` this installation or device cannot run."""
    if backend not in BACKENDS:
        raise InputError(f"diffusion.backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend != "openvino":
        return
    if device is not None and device.type != "cpu":
        raise InputError(f"diffusion.backend=openvino runs on the CPU; with device={device.type} use "
                         "diffusion.backend=torch (or device=cpu)")
    if openvino_module() is None:
        raise UnavailableError(f"diffusion.backend=openvino needs OpenVINO, which is not installed: {INSTALL_HINT} "
                               "(or run with diffusion.backend=torch)")


def cache_root() -> Path:
    from img2mesh.data.scenes import cache_dir

    return cache_dir() / "openvino"


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's parameter and buffer names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for name, tensor in list(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _UNetForExport(torch.nn.Module):
    """The UNet as a plain (sample, timestep, context) -> eps function, for tracing."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def convert_unet(unet, latent_hw: tuple[int, int], path: Path) -> Path:
    """Convert ``unet`` (fp32 torch) to OpenVINO IR at ``path`` (.xml + .bin), batch dynamic. Returns ``path``."""
    import openvino as ov

    h, w = latent_hw
    channels = unet.config.in_channels
    width = unet.config.cross_attention_dim
    unet = unet.float()
    example = (torch.zeros(2, channels, h, w), torch.tensor(500.0), torch.zeros(2, 1, width))
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # diffusers' shape checks, constant here
        ov_model = ov.convert_model(_UNetForExport(unet).eval(), example_input=example,
                                    input=[([-1, channels, h, w], ov.Type.f32), ([], ov.Type.f32),
                                           ([-1, 1, width], ov.Type.f32)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.xml")
    ov.save_model(ov_model, tmp, compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)  # the .xml last: its presence means the pair is complete
    log.info("OpenVINO: converted the UNet in %.0f s (cached in %s)", time.perf_counter() - t0, path.parent)
    return path


class OpenVINOUNet(torch.nn.Module):
    """Stands in for the diffusers UNet in :meth:`Zero123.predict_noise`: same call, OpenVINO inside."""

    def __init__(self, compiled, config, precision: str):
        super().__init__()
        self.compiled, self.config, self.precision = compiled, config, precision
        self.request = compiled.create_infer_request()

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False):
        t = np.asarray(float(timestep.item() if torch.is_tensor(timestep) else timestep), dtype=np.float32)
        out = self.request.infer([sample.float().cpu().numpy(), t, encoder_hidden_states.float().cpu().numpy()])
        eps = torch.from_numpy(np.array(next(iter(out.values()))))
        return (eps,) if not return_dict else {"sample": eps}


def unet_key(unet, latent_hw: tuple[int, int]) -> str:
    import openvino as ov

    settings = {"weights": weights_digest(unet), "latent_hw": list(latent_hw), "in": unet.config.in_channels,
                "context": unet.config.cross_attention_dim, "openvino": ov.__version__, "batch": "dynamic"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def use_openvino_unet(model, latent_hw: tuple[int, int], precision: str = "bf16", cache: Path | None = None):
    """Replace ``model.unet`` (a Zero123 bundle on the CPU) by an :class:`OpenVINOUNet`, converting it on the
    first run and reading the cached IR after. ``precision``: "bf16" or "fp32" (OpenVINO's inference precision).
    The bundle's other parts, and its dtype for them, stay as they are. Returns ``model``."""
    check_backend("openvino", model.device)
    if isinstance(model.unet, OpenVINOUNet):
        return model
    import openvino as ov

    root = Path(cache) if cache is not None else cache_root()
    path = root / unet_key(model.unet, latent_hw) / "unet.xml"
    if not path.is_file():
        log.info("OpenVINO: converting the UNet once (minutes for the full-size model; cached after)")
        convert_unet(model.unet, latent_hw, path)
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(path.parent / "compiled")})
    hint = {"bf16": "bf16", "fp32": "f32"}[precision]
    # torch's thread count (the `threads` setting) bounds OpenVINO's too: OpenVINO would otherwise take every core
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                                 "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    model.unet = OpenVINOUNet(compiled, model.unet.config, precision)
    log.info("diffusion.backend=openvino: the UNet runs in OpenVINO (%s)", precision)
    return model
