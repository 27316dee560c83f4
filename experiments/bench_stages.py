"""Per-stage cost of `img2mesh run` on this machine: wall time, CPU time and peak memory of each stage.

    python experiments/bench_stages.py --config cpu --object cow              # views: 1 DDIM step, extrapolated
    python experiments/bench_stages.py --config default --object cow --skip views
    python experiments/bench_stages.py --config cpu --size tiny --steps 2     # quick check of the script

Two runs in one process, each stage a resumed call so it is measured alone (bench_e2e.py's peak RSS sampler):
1. ``preprocess`` + ``views``: the scene photo through rembg and the generator, the Zero-1-to-3 architecture of
   ``--size`` with random weights (timing does not depend on their values), saved and loaded through
   ``diffusion.model`` like real weights. The full-size model on a CPU needs minutes per DDIM step, so the views
   run ``--steps`` steps and the preset's step count is extrapolated: the UNet's CPU time (counted around
   ``Zero123.predict_noise``) scales with the steps, the rest (loading, CLIP, VAE, masks) does not.
2. ``recon`` + ``export``: `img2mesh recon --views DIR` on the 20 deg ring of a shared mesh (the preset's view
   count, 256 px: what the generator makes), so the reconstruction sees views that agree with each other. One
   call: its CPU time and peak cover both; run.json's stage timings split the wall time.
CPU seconds are the process's (every thread) plus its finished children's; with one thread
(OMP_NUM_THREADS=1, ``--threads 1``), the figure other jobs on a shared machine disturb least.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import PeakRSS  # noqa: E402
from gt_views import MESHES, gt_views  # noqa: E402

import img2mesh  # noqa: E402
from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.views import write_views  # noqa: E402
from img2mesh.diffusion import build_random_zero123  # noqa: E402
from img2mesh.diffusion.zero123 import Zero123  # noqa: E402


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class UNetTally:
    """CPU seconds spent in ``Zero123.predict_noise`` while the block runs (every instance)."""

    def __enter__(self):
        self.cpu_s, self._inner = 0.0, Zero123.predict_noise

        def counted(model, *args, **kwargs):
            t0 = time.process_time()
            try:
                return self._inner(model, *args, **kwargs)
            finally:
                self.cpu_s += time.process_time() - t0

        Zero123.predict_noise = counted
        return self

    def __exit__(self, *exc):
        Zero123.predict_noise = self._inner


def measure(stage: str, call) -> dict:
    wall, cpu = time.perf_counter(), cpu_seconds()
    with PeakRSS() as rss, UNetTally() as unet:
        call()
    return {"stage": stage, "wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
            "peak_gib": round(rss.peak / 2 ** 30, 2), "unet_cpu_s": round(unet.cpu_s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="cpu")
    p.add_argument("--size", choices=("tiny", "full"), default="full")
    p.add_argument("--scene", default="pikachu")
    p.add_argument("--object", default="cow", choices=list(MESHES), help="shared mesh whose views are reconstructed")
    p.add_argument("--steps", type=int, default=1, help="DDIM steps the views stage runs (extrapolated)")
    p.add_argument("--skip", nargs="*", default=[], choices=["views", "recon"], help="leave out run 1 / run 2")
    p.add_argument("--label", default="", help="a name for the rows (e.g. before / after)")
    p.add_argument("--json", default="", help="append the rows here as JSON lines")
    p.add_argument("overrides", nargs="*", help="config overrides for both runs, e.g. threads=1")
    args = p.parse_args(argv)
    preset = load_config(args.config, args.overrides)
    work = Path(tempfile.mkdtemp(prefix="bench_stages_"))
    rows = []
    if "views" not in args.skip:
        model_dir = build_random_zero123(args.size, seed=0).save_pretrained(work / f"zero123-{args.size}")
        overrides = [f"diffusion.model={model_dir}", f"diffusion.steps={args.steps}", *args.overrides]
        out = work / "views-run"
        for i, stage in enumerate(("preprocess", "views")):
            row = measure(stage, lambda: img2mesh.run(
                args.scene if i == 0 else None, config=args.config, overrides=overrides, out=out if i == 0 else None,
                resume=None if i == 0 else out, stop_after=stage, quiet=True))
            if stage == "views":  # the UNet's share scales with the steps, the rest does not
                scale = preset.diffusion.steps / args.steps
                row.update(steps_run=args.steps, steps=preset.diffusion.steps,
                           cpu_s_extrapolated=round(row["cpu_s"] - row["unet_cpu_s"] + row["unet_cpu_s"] * scale, 1))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    if "recon" not in args.skip:
        views, _ = gt_views(args.object, n=preset.diffusion.num_views, size=256)
        views_dir = write_views(views, work / f"{args.object}-views")
        out = work / "recon-run"
        row = measure("recon+export", lambda: img2mesh.reconstruct_views(
            views_dir, config=args.config, overrides=args.overrides, out=out, quiet=True))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        run_json = json.loads((out / "run.json").read_text())
        for stage in ("recon", "export"):  # the run's own per-stage timings split the first call
            rows.append({"stage": f"{stage} (run.json wall)", "wall_s": round(run_json["stages"][stage]["seconds"], 1)})
    for r in rows:
        r.update(config=args.config, size=args.size, object=args.object, label=args.label)
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"\npreset {args.config}, Zero-1-to-3 {args.size} (random weights), scene {args.scene}, views of "
          f"{args.object}; overrides: {' '.join(args.overrides) or '-'}\n")
    print("| stage | wall s | CPU s | CPU s at the preset's steps | peak RSS GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['wall_s']} | {r.get('cpu_s', '-')} | {r.get('cpu_s_extrapolated', '-')} | "
              f"{r.get('peak_gib', '-')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
