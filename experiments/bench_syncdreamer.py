"""Seconds per SyncDreamer denoising step (all 16 views, classifier-free guidance on) and peak memory, at each
``batch_view_num``, for the released architecture with random weights (no weights are needed).

    /work/bin/heavy python experiments/bench_syncdreamer.py                  # full size, 1 thread, 4 / 8 / 16
    python experiments/bench_syncdreamer.py --size tiny --batch-view-num 4 16

One step = one ``predict_eps`` call: the spatial volume from the 16 noisy latents once, then the frustum
volumes and the UNet on [cond; uncond] rows, ``batch_view_num`` views per call. Settings run in increasing
batch order so the process's peak resident memory after each row is that row's peak. CPU seconds are the
process's user + system time (what a contended machine still measures fairly); wall seconds are printed too.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--batch-view-num", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per setting (after one untimed warm-up "
                                                               "when > 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--json", help="append one JSON line per row to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from img2mesh.diffusion.syncdreamer.model import SyncCondition
    from img2mesh.diffusion.syncdreamer.sizes import FULL, build_random_syncdreamer, tiny_config

    config = FULL if args.size == "full" else tiny_config(volume_size=32, frustum_depth=48)
    start = time.perf_counter()
    model = build_random_syncdreamer(config, seed=0)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.size} SyncDreamer: {params / 1e6:.0f} M parameters, built in {build_s:.0f} s (imports included), "
          f"resident {peak_rss_gib():.1f} GiB; torch {torch.__version__}, {args.threads} thread(s)")

    g = torch.Generator().manual_seed(0)
    h = model.latent_size
    cond = SyncCondition(clip_embedding=torch.randn(1, 1, config.clip["projection_dim"], generator=g),
                         input_latent=torch.randn(1, 4, h, h, generator=g))
    x_t = torch.randn(1, model.num_views, 4, h, h, generator=g)

    print(f"{'batch_view_num':>14} {'UNet calls':>10} {'CPU s/step':>10} {'wall s/step':>11} {'peak GiB':>8}")
    for bvn in sorted(args.batch_view_num):
        if args.repeats > 1:
            model.predict_eps(x_t, 501, cond, 0.5, args.guidance, bvn)
        cpu, wall = [], []
        for _ in range(args.repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            model.predict_eps(x_t, 501, cond, 0.5, args.guidance, bvn)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        row = dict(size=args.size, batch_view_num=bvn, unet_calls=-(-model.num_views // bvn),
                   cpu_s=min(cpu), wall_s=min(wall), peak_gib=peak_rss_gib(), threads=args.threads)
        print(f"{bvn:>14} {row['unet_calls']:>10} {row['cpu_s']:>10.1f} {row['wall_s']:>11.1f} {row['peak_gib']:>8.1f}")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
