"""ViewFusion sampling cost: the reference-style schedule versus the optimised one, on random weights.

    python experiments/bench_viewfusion.py --size full --device cuda            # 36 views x 75 steps, 256 px
    python experiments/bench_viewfusion.py --size tiny --device cpu
    python experiments/bench_viewfusion.py --size full --device cpu --views 3 --steps 3   # proves it runs

Timing does not depend on weight values, so the full-size Zero-1-to-3 architecture with random weights
stands in for zero123-xl. Rows:
  naive      fp32, one [uncond, cond] UNet call per anchor per step (the reference's call pattern)
  opt-fp32   fp32, one unconditional row per step, all anchors batched (max_batch; 0 = automatic)
  opt-half   the same in half precision (fp16 on CUDA, bf16 elsewhere)
Columns: seconds per generated view, UNet calls and rows, peak memory (CUDA: max allocated; CPU: process
peak RSS so far), and the max |difference| of the decoded images to the naive fp32 output (in [-1, 1]).
Targets on one H100: opt-fp32 >= 1.8x faster than naive with identical output, opt-half >= 4x, <= 12 GB.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace

import torch

from img2mesh.data.devices import resolve_device
from img2mesh.data.progress import set_quiet
from img2mesh.diffusion import DiffusionConfig, build_random_zero123
from img2mesh.diffusion.architecture import architecture
from img2mesh.diffusion.generate import synthesize
from img2mesh.diffusion.viewfusion import RelativePose


def test_image(size: int) -> torch.Tensor:
    """A coloured disc on white, [1, 3, size, size] in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    inside = (x ** 2 + y ** 2 < 0.5).float()
    rgb = torch.stack([0.9 * inside + (1 - inside), 0.3 * inside + (1 - inside), 0.2 * inside + (1 - inside)])
    return (rgb * 2 - 1)[None]


def ring(num_views: int) -> list[RelativePose]:
    step = 360.0 / num_views
    return [RelativePose(a if a <= 180 else a - 360, 0.0, 2.0) for a in (step * j for j in range(1, num_views))]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def run(model, image, targets, cfg, seed, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], targets, cfg, torch.Generator().manual_seed(seed))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start, peak_memory_gb(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["tiny", "full"], default="tiny")
    p.add_argument("--device", default="auto")
    p.add_argument("--views", type=int, default=36, help="views on the ring, the input included")
    p.add_argument("--steps", type=int, default=75)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--max-batch", type=int, default=0, help="UNet rows per call for the optimised runs; 0 = auto")
    p.add_argument("--half", choices=["fp16", "bf16", "auto"], default="auto")
    p.add_argument("--modes", default="naive,opt-fp32,opt-half")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    args = p.parse_args(argv)
    set_quiet(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.half,
                                                               torch.float16 if device.type == "cuda" else torch.bfloat16)
    size = architecture(args.size).image_size
    t0 = time.perf_counter()
    model = build_random_zero123(args.size, seed=0, device=device, dtype=torch.float32)
    build_s = time.perf_counter() - t0
    image, targets = test_image(size).to(device), ring(args.views)
    base = DiffusionConfig(num_views=args.views, steps=args.steps, guidance_scale=args.guidance, eta=1.0)
    configs = {"naive": replace(base, share_uncond=False, max_batch=2),
               "opt-fp32": replace(base, max_batch=args.max_batch),
               "opt-half": replace(base, max_batch=args.max_batch)}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(configs)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}: choose from {', '.join(configs)}")

    print(f"# bench_viewfusion: size={args.size} ({size} px) device={device} views={args.views} "
          f"(generated {len(targets)}) steps={args.steps} cfg={args.guidance} threads={torch.get_num_threads()} "
          f"model build {build_s:.1f} s", flush=True)
    print(f"| mode | dtype | s / view | total s | UNet calls | UNet rows | peak GB | max |diff| vs naive | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for mode in modes:
        if mode == "opt-half":
            model.to(dtype=half)
        out, seconds, peak = run(model, image, targets, configs[mode], args.seed, device)
        if mode == "opt-half":
            model.to(dtype=torch.float32)
        results[mode] = (out, seconds)
        ref = results.get("naive")
        diff = f"{(out.images - ref[0].images).abs().max().item():.2e}" if ref and mode != "naive" else "-"
        speed = f"{ref[1] / seconds:.2f}x" if ref else "-"
        dtype = str(half if mode == "opt-half" else torch.float32).replace("torch.", "")
        print(f"| {mode} | {dtype} | {seconds / len(targets):.3f} | {seconds:.1f} | {out.stats.unet_calls} | "
              f"{out.stats.unet_rows} | {peak:.2f} | {diff} | {speed} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
