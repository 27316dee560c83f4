"""diffusion.backend=openvino: refused with the install hint when OpenVINO is missing (simulated, so it holds
whether or not it is installed), and where it is installed the converted UNet matches torch and is cached."""
import sys

import numpy as np
import pytest
import torch

from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.errors import InputError, UnavailableError
from img2mesh.data.preprocess import PreparedInput
from img2mesh.diffusion import build_random_zero123, generate_views
from img2mesh.diffusion.config import DiffusionConfig
from img2mesh.diffusion.openvino_unet import OpenVINOUNet, check_backend, unet_key, use_openvino_unet


def prepared():
    rgba = np.random.default_rng(0).random((32, 32, 4)).astype(np.float32)
    rgba[..., 3] = 1.0
    return PreparedInput(rgba, camera_from_spherical(10.0, 90.0, 2.0, width=32))


def cfg(**kw):
    return DiffusionConfig(**{"num_views": 2, "steps": 2, "max_batch": 8, "dtype": "fp32", **kw})


@pytest.fixture
def without_openvino(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError


def test_openvino_missing_is_refused_before_any_work(without_openvino):
    with pytest.raises(UnavailableError, match=r"pip install 'img2mesh\[openvino\]'") as err:
        check_backend("openvino")
    assert err.value.exit_code == 4 and "diffusion.backend=torch" in str(err.value)
    with pytest.raises(UnavailableError):  # checked with the other settings, before the model is loaded
        generate_views(cfg(backend="openvino", model="/no/such/model"), prepared(), device="cpu",
                       remove_background=False)
    check_backend("torch")  # the default needs nothing


def test_unknown_backend_and_gpu_device_are_bad_input():
    with pytest.raises(InputError, match="choose one of torch, openvino"):
        check_backend("onnx")
    with pytest.raises(InputError, match="runs on the CPU"):
        check_backend("openvino", torch.device("cuda"))


def test_openvino_unet_matches_torch_and_is_converted_once(tmp_path, caplog):
    pytest.importorskip("openvino")
    model = build_random_zero123("tiny", seed=0)
    g = torch.Generator().manual_seed(1)
    latents, concat = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    context = torch.randn(3, 1, model.cc_projection.projection.out_features, generator=g)
    expected = model.predict_noise(latents, torch.tensor(501), context, concat)
    use_openvino_unet(model, (4, 4), "fp32", cache=tmp_path)
    assert isinstance(model.unet, OpenVINOUNet)
    got = model.predict_noise(latents, torch.tensor(501), context, concat)
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=1e-4)
    assert model.predict_noise(latents[:1], torch.tensor(21), context[:1], concat[:1]).shape == (1, 4, 4, 4)
    (ir,) = tmp_path.glob("*/unet.xml")
    stamp = ir.stat().st_mtime_ns
    again = build_random_zero123("tiny", seed=0)  # the same weights: the cached IR is read, not rebuilt
    with caplog.at_level("INFO", logger="img2mesh.diffusion.openvino_unet"):
        use_openvino_unet(again, (4, 4), "fp32", cache=tmp_path)
    assert not any("converting" in r.getMessage() for r in caplog.records) and ir.stat().st_mtime_ns == stamp
    one, other = build_random_zero123("tiny", seed=0).unet, build_random_zero123("tiny", seed=1).unet
    assert ir.parent.name == unet_key(one, (4, 4)) != unet_key(other, (4, 4)) != unet_key(one, (8, 8))
