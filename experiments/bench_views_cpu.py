"""Views on a CPU: seconds per view per DDIM step of the Zero-1-to-3 sampler (ViewFusion, optimised schedule)
in torch fp32, torch bf16 and OpenVINO (fp32 / bf16), and how far each one's decoded views are from fp32 torch.

    python experiments/bench_views_cpu.py --size full                  # the real architecture, random weights
    python experiments/bench_views_cpu.py --size tiny --views 3 --steps 2

Timing does not depend on weight values, so the full-size architecture with random weights (seed 0) stands in
for zero123-xl. Every row samples the same targets from the same noise (bench_viewfusion.py's disc image and
ring), ``--max-batch`` UNet rows per call. Columns: CPU seconds of the process (one thread: run it with
OMP_NUM_THREADS=1; the figure other jobs on the machine disturb least) per generated view per step, the
UNet's share per row, and max / mean |difference| of the decoded views (RGB in [0, 1]) to torch fp32's.
OpenVINO's one-off conversion (cached after; diffusion/openvino_unet.py) and compile times are printed apart.
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_viewfusion import ring, test_image  # noqa: E402

from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.diffusion import DiffusionConfig, build_random_zero123  # noqa: E402
from img2mesh.diffusion.architecture import architecture  # noqa: E402
from img2mesh.diffusion.generate import synthesize  # noqa: E402
from img2mesh.diffusion.openvino_unet import use_openvino_unet  # noqa: E402
from img2mesh.diffusion.viewfusion import RelativePose  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def timed_unet(model) -> dict:
    """Count the UNet's rows and CPU seconds from here on (wraps ``model.predict_noise``)."""
    tally = {"rows": 0, "cpu_s": 0.0}
    inner = type(model).predict_noise.__get__(model)

    def predict_noise(latents, t, context, concat):
        t0 = time.process_time()
        out = inner(latents, t, context, concat)
        tally["rows"] += latents.shape[0]
        tally["cpu_s"] += time.process_time() - t0
        return out

    model.predict_noise = predict_noise
    return tally


def sample(model, image, targets, cfg):
    tally = timed_unet(model)
    t0 = time.process_time()
    out = synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], targets, cfg, torch.Generator().manual_seed(0))
    seconds = time.process_time() - t0
    del model.predict_noise
    tally["view_steps"] = len(targets) * len(out.timesteps)  # the steps the schedule ran (reference: steps - 1)
    return (out.images.float().clamp(-1, 1) + 1) / 2, seconds, tally


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="full", choices=["full", "tiny"])
    p.add_argument("--views", type=int, default=3, help="ring size, the input included (views - 1 generated)")
    p.add_argument("--steps", type=int, default=2, help="DDIM steps")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--cache", default="", help="OpenVINO IR cache folder (default: a temporary one)")
    p.add_argument("--rows", nargs="+", default=["torch-fp32", "openvino-fp32", "openvino-bf16", "torch-bf16"])
    args = p.parse_args(argv)
    set_quiet(True)
    torch.manual_seed(0)
    t0 = time.process_time()
    model = build_random_zero123(args.size, seed=0)
    print(f"model built in {time.process_time() - t0:.1f} CPU s", file=sys.stderr, flush=True)
    image = test_image(architecture(args.size).image_size)
    targets = ring(args.views)
    cfg = DiffusionConfig(steps=args.steps, max_batch=args.max_batch)
    hw = image.shape[-1] // model.vae_scale_factor
    results, reference = [], None
    torch_unet = model.unet
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        for row in args.rows:
            backend, precision = row.split("-")
            note = ""
            if backend == "openvino":
                model.unet = torch_unet
                t0, c0 = time.perf_counter(), time.process_time()
                use_openvino_unet(model, (hw, hw), precision, cache=cache)
                note = f"load/convert+compile {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU s"
            else:
                model.unet = torch_unet
                if precision == "bf16":
                    model.to(dtype=torch.bfloat16)  # last row: fp32 weights are not needed again
            gc.collect()
            images, seconds, tally = sample(model, image, targets, cfg)
            if reference is None:
                reference = images
            diff = (images - reference).abs()
            results.append((row, seconds / tally["view_steps"], tally["cpu_s"] / max(tally["rows"], 1), tally["rows"],
                            float(diff.max()), float(diff.mean()), peak_rss_gb(), note))
            print(results[-1], file=sys.stderr, flush=True)
    base = results[0][1]
    print(f"{args.size} architecture, {len(targets)} views x {args.steps} steps, max batch {args.max_batch}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'row':<15} {'s/view/step':>11} {'vs fp32':>7} {'s/row':>6} {'rows':>5} {'max|d|':>8} {'mean|d|':>8} "
          f"{'peak GB':>7}  note")
    for row, s, s_row, rows, dmax, dmean, peak, note in results:
        print(f"{row:<15} {s:>11.2f} {base / s:>6.2f}x {s_row:>6.2f} {rows:>5} {dmax:>8.2e} {dmean:>8.2e} "
              f"{peak:>7.1f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
