"""Where the CPU preset's reconstruction spends its time: torch.profiler's per-op table over a few training
steps, and the split between the start (hull, carving, priors) and the steps.

    OMP_NUM_THREADS=1 python experiments/profile_recon.py --object cow --steps 40
    python experiments/profile_recon.py --object cow --steps 40 --overrides recon.rays_per_batch=2048

The views: the shared mesh's 36-view ring at 128 px (bench_recon.py's exact set). The start is computed once
outside the profiler; the profiled block is ``--steps`` training steps of ``reconstruct`` (``max_steps``), one
thread. Prints the ops by self CPU time and the CPU seconds per step.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gt_views import MESHES, gt_views  # noqa: E402

from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.recon import reconstruct  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--object", default="cow", choices=list(MESHES))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--rows", type=int, default=25, help="ops shown")
    p.add_argument("--overrides", nargs="*", default=[])
    args = p.parse_args(argv)
    set_quiet(True)
    torch.set_num_threads(1)
    cfg = load_config("cpu", args.overrides).recon
    views, _ = gt_views(args.object, size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        reconstruct(cfg, views, tmp, max_steps=1, resume=False)  # the start, cached in tmp, and one step
        start_cpu = time.process_time() - t0
        t0 = time.process_time()
        reconstruct(cfg, views, Path(tmp), max_steps=1 + args.steps, resume=True)  # warm: start read back
        plain = time.process_time() - t0
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            reconstruct(cfg, views, Path(tmp), max_steps=1 + 2 * args.steps, resume=True)
    print(f"{args.object}, {args.size} px, CPU preset {' '.join(args.overrides) or ''}: start + 1 step "
          f"{start_cpu:.1f} CPU s; {args.steps} steps (resumed, unprofiled) {plain:.1f} CPU s = "
          f"{plain / args.steps:.3f} s/step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
