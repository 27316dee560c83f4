"""Benchmark: `img2mesh batch` here and on a local Ray instance, and the re-run of a finished batch.

    python experiments/bench_batch.py                      # 3 scene images, tiny random Zero-1-to-3, CPU
    python experiments/bench_batch.py --scenes pikachu minion yellowduck taxi --ray-cpus 4

The images are the scenes' input photos at 128 px (RGBA: no background removal); the settings are
tests/test_app_batch.py's (2 views x 2 DDIM steps, a 10-step NeuS on 32 px views, 32^3 mesh, 64 px texture),
so the numbers measure the batch machinery, not the quality. Times are wall clock of `img2mesh batch`;
Ray's start (`ray.init`) is timed separately.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_recon.py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gt_views import shared_dir  # noqa: E402

FAST = ["diffusion.num_views=2", "diffusion.steps=2", "recon.steps=10", "recon.image_size=32",
        "recon.rays_per_batch=256", "recon.init.hull_resolution=32", "recon.checkpoint_every=0",
        "recon.init.base_relax_steps=0", "recon.init.unseen_fill=false", "recon.neus.resolution=32",
        "recon.neus.coarse_resolution=0", "recon.neus.color_resolution=16", "export.mesh.resolution=32",
        "export.turntable=false", "export.grid=false", "export.texture_size=64", "recon.init.hull_tolerance=0.75"]


def timed(args: list[str]) -> tuple[int, float]:
    from img2mesh.cli import main

    t0 = time.perf_counter()
    code = main(args)
    return code, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["pikachu", "minion", "yellowduck"])
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (one worker per CPU)")
    args = p.parse_args(argv)
    from PIL import Image

    from img2mesh.diffusion import build_random_zero123

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        for name in args.scenes:
            with Image.open(shared_dir() / "scenes" / "nerf_wild" / name / "train" / "r_0.png") as im:
                im.resize((128, 128)).save(photos / f"{name}.png")
        model = build_random_zero123("tiny", seed=0).save_pretrained(tmp / "tiny")
        common = ["-c", "cpu", "--model", str(model), "--quiet", *FAST]
        rows = []
        code, seconds = timed(["batch", str(photos), "--out", str(tmp / "local"), *common])
        rows.append(("here", code, seconds))
        code, seconds = timed(["batch", str(photos), "--out", str(tmp / "local"), *common])
        rows.append(("here, again (all finished)", code, seconds))
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
        rows.append((f"ray.init(num_cpus={args.ray_cpus})", 0, time.perf_counter() - t0))
        try:
            code, seconds = timed(["batch", str(photos), "--out", str(tmp / "ray"), "--ray", "auto", *common])
            rows.append((f"--ray auto ({args.ray_cpus} workers)", code, seconds))
        finally:
            ray.shutdown()
    print(f"{len(args.scenes)} images, tiny model, CPU ({os.cpu_count()} cores)")
    for what, code, seconds in rows:
        print(f"{what:<32} exit {code}  {seconds:7.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
