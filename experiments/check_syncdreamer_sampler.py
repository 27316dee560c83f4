"""img2mesh's whole SyncDreamer run against the ORIGINAL code: input preparation, then sampling with the same
weights and the same draws; prints max |difference| per output.

Set up as experiments/check_syncdreamer_original.py (a checkout of github.com/liuyuan-pal/SyncDreamer, its
model code's few packages in a side folder), then, from the checkout:

    python <img2mesh>/experiments/check_syncdreamer_sampler.py --deps /tmp/sd_deps --image RGBA.png --elevation 20

The original's random draws (the input latent's posterior draw, x_T, one z per step) are recorded while it
samples and handed to img2mesh as explicit noise (``diffusion.noise``'s tensors), so both runs see the same
numbers. The original's ``prepare_inputs`` prepares the image for both samplers; img2mesh's own preparation
is compared with it separately, at both crop rules.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_syncdreamer_original import arguments, compare, model_pair  # noqa: E402


def recorded_draws(run):
    """``run()`` with every torch.randn / torch.randn_like result recorded, in order."""
    randn, randn_like, draws = torch.randn, torch.randn_like, []

    def record(draw):
        def recorded(*args, **kwargs):
            out = draw(*args, **kwargs)
            draws.append(out.clone())
            return out
        return recorded

    torch.randn, torch.randn_like = record(randn), record(randn_like)
    try:
        return run(), draws
    finally:
        torch.randn, torch.randn_like = randn, randn_like


def options(parser):
    parser.add_argument("--image", type=Path, required=True, help="an RGBA image of an object")
    parser.add_argument("--elevation", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--crop-size", type=int, default=200)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], options)
    port, original = model_pair(args)
    from ldm.models.diffusion.sync_dreamer import SyncDDIMSampler
    from ldm.util import prepare_inputs

    from img2mesh.diffusion.syncdreamer.inputs import prepare_input
    from img2mesh.diffusion.syncdreamer.noise import SyncNoise
    from img2mesh.diffusion.syncdreamer.sampler import SyncSamplerSettings, sample_syncdreamer, to_uint8

    rgba = np.asarray(Image.open(args.image).convert("RGBA"))
    for crop in (-1, args.crop_size):
        theirs = prepare_inputs(str(args.image), args.elevation, crop)["input_image"]
        ours = prepare_input(rgba[..., :3], rgba[..., 3], 256, crop)
        compare(f"input, crop_size {crop}", theirs, torch.from_numpy(ours))

    batch = {k: v[None] for k, v in prepare_inputs(str(args.image), args.elevation, args.crop_size).items()}
    original.device = torch.device("cpu")  # Lightning's attribute (Lightning itself is replaced by a stand-in)
    sampler = SyncDDIMSampler(original, args.steps, ddim_eta=args.eta)
    torch.manual_seed(0)
    with torch.no_grad():
        theirs, draws = recorded_draws(lambda: original.sample(sampler, batch, 2.0, 8))
    noise = SyncNoise(draws[1][0], draws[0], torch.stack([z[0] for z in draws[2:]]))
    print(f"recorded {len(draws)} draws: posterior {list(draws[0].shape)}, x_T {list(draws[1].shape)}, "
          f"{len(draws) - 2} step draws")
    ours = sample_syncdreamer(port, batch["input_image"].permute(0, 3, 1, 2), args.elevation,
                              SyncSamplerSettings(args.steps, 2.0, args.eta, 8), noise=noise)
    compare("views [-1, 1]", theirs.clamp(-1, 1), ours.images)
    differ = (to_uint8(theirs) != to_uint8(ours.images)).mean()
    print(f"{'views uint8':30s} {100 * differ:.4f} % of values differ")


if __name__ == "__main__":
    main()
