"""The port against the ORIGINAL SyncDreamer code, same weights, same draws: prints max |difference| per output.

Needs a checkout of the original repository (github.com/liuyuan-pal/SyncDreamer) and the few packages its
model code imports (kornia, kornia_rs, einops, OpenAI's ``clip``), e.g. in a side folder:

    pip install --target /tmp/sd_deps kornia kornia_rs einops openai-clip --no-deps
    cd <SyncDreamer checkout> && python <img2mesh>/experiments/check_syncdreamer_original.py --deps /tmp/sd_deps

(run from the checkout: the original reads meta_info/camera-16.pkl). It builds a random SyncDreamer with the
released volume networks, VAE and image size and a small UNet and CLIP tower, writes it as the original
checkpoint + TorchScript CLIP archive (tests/syncdreamer_tiny.py), loads that STRICTLY into the original
``SyncMultiviewDiffusion`` and converts it with ``img2mesh``'s converter, then compares the CLIP embedding,
the input latent (same posterior draw), eps at several timesteps / chunk sizes / guidance scales (the
original's sampler, captured before its update), the decoded images, and the original's camera file against
the cameras img2mesh builds for random models. The original's training-only imports (Lightning, OpenCV,
torchvision, scikit-image, taming) are replaced by inert stand-ins. Nothing of the original is copied here.
"""
from __future__ import annotations

import argparse
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def stand_ins(deps: str | None) -> None:
    import diffusers  # noqa: F401  imported before the stand-ins: transformers/diffusers probe for torchvision
    import transformers  # noqa: F401
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401  resolve diffusers' lazy modules now
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: F401
    from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: F401
    from diffusers.models.embeddings import get_timestep_embedding  # noqa: F401
    from transformers import CLIPVisionModelWithProjection  # noqa: F401

    if deps:
        sys.path.insert(0, deps)
    sys.path.insert(0, str(Path.cwd()))

    class AnyMeta(type):
        def __getattr__(cls, name):
            return Any

    class Any(metaclass=AnyMeta):
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return self

        def __getattr__(self, name):
            return Any()

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    for name in ("cv2", "torchvision", "torchvision.transforms", "matplotlib", "matplotlib.pyplot", "skimage",
                 "skimage.io", "ftfy", "regex", "taming", "taming.modules", "taming.modules.vqvae",
                 "taming.modules.vqvae.quantize"):
        try:
            __import__(name)
        except Exception:  # absent here: an inert stand-in (only training and file I/O use them)
            module(name)
    sys.modules["skimage.io"].imsave = sys.modules["skimage.io"].imread = lambda *a, **k: None
    sys.modules["taming.modules.vqvae.quantize"].VectorQuantizer2 = Any
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].__getattr__ = lambda name: Any
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    module("pytorch_lightning", LightningModule=torch.nn.Module)


def compare(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    a, b = a.float(), b.float()
    print(f"{name:30s} max|diff| {(a - b).abs().max().item():.2e}   max|value| {a.abs().max().item():.2e}")


def arguments(description: str, more=None) -> argparse.Namespace:
    """The options of the model pair; ``more(parser)`` adds a script's own."""
    parser = argparse.ArgumentParser(description=description)
    if more is not None:
        more(parser)
    parser.add_argument("--deps", help="folder holding kornia, einops, clip (added to sys.path)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/syncdreamer-check"))
    parser.add_argument("--volume-size", type=int, default=8, help="spatial volume (the original's is 32; smaller "
                                                                   "is faster and runs the same code)")
    parser.add_argument("--frustum-depth", type=int, default=8, help="frustum depths (the original's is 48)")
    parser.add_argument("--heads", default="num_heads=8", help="the UNet YAML's num_heads=N or num_head_channels=C")
    return parser.parse_args()


def model_pair(args: argparse.Namespace):
    """(the port, the original SyncMultiviewDiffusion) holding the same random weights (see the docstring)."""
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))
    import yaml
    from syncdreamer_tiny import original_yaml, write_tiny_syncdreamer

    from img2mesh.diffusion.syncdreamer.checkpoint import syncdreamer_from_checkpoint
    from img2mesh.diffusion.syncdreamer.sizes import FULL, build_random_syncdreamer

    key, value = args.heads.split("=")
    widths = (32, 32, 64, 64)
    heads = int(value) if key == "num_heads" else tuple(w // int(value) for w in widths)
    config = replace(FULL, unet=dict(FULL.unet, block_out_channels=widths, attention_head_dim=heads),
                     clip=dict(FULL.clip, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                               num_attention_heads=1, patch_size=32),  # 224 px, 768-d: the original's constants
                     volume_size=args.volume_size, frustum_depth=args.frustum_depth, source="check")
    model = build_random_syncdreamer(config, seed=3)
    args.out.mkdir(parents=True, exist_ok=True)
    _, ckpt, archive = write_tiny_syncdreamer(args.out, model=model)
    original_config = original_yaml(model, **{key: int(value)})
    (args.out / "syncdreamer.yaml").write_text(yaml.safe_dump(original_config))
    port = syncdreamer_from_checkpoint(ckpt, archive, args.out / "syncdreamer.yaml", args.volume_size,
                                       args.frustum_depth)

    stand_ins(args.deps)
    from ldm.models.diffusion.sync_dreamer import SpatialVolumeNet, SyncMultiviewDiffusion

    original = SyncMultiviewDiffusion(unet_config=original_config["model"]["params"]["unet_config"],
                                      scheduler_config=None, image_size=256, clip_image_encoder_path=str(archive))
    original.spatial_volume = SpatialVolumeNet(256, 4, 16, spatial_volume_size=args.volume_size,
                                               frustum_volume_depth=args.frustum_depth)
    original.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"], strict=True)
    original.eval()
    print("the original loads the checkpoint strictly")
    return port, original


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    port, original = model_pair(args)
    from ldm.base_utils import read_pickle
    from ldm.models.diffusion.sync_dreamer import SyncDDIMSampler

    from img2mesh.diffusion.syncdreamer.cameras import target_azimuths, target_intrinsics, target_poses

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 256, 256, 3, generator=g) * 2 - 1  # two instances, as sample_num 2
    elevation = torch.tensor([np.deg2rad(20.0), np.deg2rad(-5.0)], dtype=torch.float32)
    with torch.no_grad():
        torch.manual_seed(11)  # the original draws the posterior noise inside: the same seed gives the same draw
        _, clip_embed, info = original.prepare({"input_image": image, "input_elevation": elevation[:, None]})
        torch.manual_seed(11)
        cond = port.encode_input(image.permute(0, 3, 1, 2), torch.randn(2, 4, 32, 32))
        compare("CLIP embedding", clip_embed, cond.clip_embedding)
        compare("input latent", info["x"], cond.input_latent)
        sampler = SyncDDIMSampler(original, 50)
        captured, update = {}, sampler.denoise_apply_impl

        def capture(x, index, eps, is_step0=False):
            captured["eps"] = eps
            return update(x, index, eps, is_step0)

        sampler.denoise_apply_impl = capture
        x_t = torch.randn(2, 16, 4, 32, 32, generator=g)
        for t, views, scale in ((981, 4, 2.0), (1, 8, 2.0), (501, 16, 1.0), (241, 5, 3.5)):
            index = int(np.where(sampler.ddim_timesteps == t)[0][0])
            sampler.denoise_apply(x_t, info, clip_embed, torch.full((2,), t, dtype=torch.long), index, scale,
                                  batch_view_num=views, is_step0=True)
            compare(f"eps t={t} views/call={views} s={scale}", captured["eps"],
                    port.predict_eps(x_t, t, cond, elevation, guidance_scale=scale, batch_view_num=views))
        z = torch.randn(3, 4, 32, 32, generator=g)
        compare("decoded images", original.decode_first_stage(z).clamp(-1, 1), port.decode(z))
        K, azimuths, _, _, poses = read_pickle("meta_info/camera-16.pkl")
        compare("camera-16.pkl poses", torch.from_numpy(poses.astype(np.float32)), target_poses())
        compare("camera-16.pkl K", torch.from_numpy(K.astype(np.float32)).expand(16, 3, 3), target_intrinsics(256))
        wrapped = ((azimuths + np.pi) % (np.pi * 2) - np.pi).astype(np.float32)
        compare("camera-16.pkl azimuths", torch.from_numpy(wrapped), target_azimuths())


if __name__ == "__main__":
    main()
