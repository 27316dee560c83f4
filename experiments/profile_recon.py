"""Where the CPU preset's reconstruction spends its time: wall time per part of a training step, torch.profiler's
per-op table (backward nodes included), and the split between the start (hull, carving, priors) and the steps.

    python experiments/profile_recon.py --object cow --steps 60 --threads 2            # from the first step
    python experiments/profile_recon.py --object cow --steps 60 --from-step 520        # the fine grid's phase
    python experiments/profile_recon.py --steps 40 --ops --overrides recon.rays_per_batch=2048

The views: the shared mesh's 36-view ring at 128 px (bench_recon.py's exact set). The run goes to
``--from-step`` (the start computed and cached on the way), then ``--steps`` more are measured as a resumed call.
Parts: the functions named in ``PARTS`` are wrapped with timers that count their own time (a part called from
another is taken out of the caller's); ``backward`` is the whole autograd pass. ``--ops`` adds the profiler's
tables for the same steps (run again, profiled).
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_recon.py

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gt_views import MESHES, gt_views  # noqa: E402

from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.recon import reconstruct  # noqa: E402
from img2mesh.recon.fields.neus import GridNeuSField  # noqa: E402
from img2mesh.recon.methods import neus as neus_method  # noqa: E402
from img2mesh.recon.render import volume  # noqa: E402
from img2mesh.recon.train import trainer  # noqa: E402


class PartTimer:
    """Own wall time of wrapped functions (time in a wrapped callee is the callee's)."""

    def __init__(self):
        self.seconds, self._stack = collections.defaultdict(float), []

    def wrap(self, owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            self._stack.append(0.0)
            try:
                return inner(*args, **kwargs)
            finally:
                spent, in_callees = time.perf_counter() - t0, self._stack.pop()
                self.seconds[name] += spent - in_callees
                if self._stack:
                    self._stack[-1] += spent

        setattr(owner, attr, timed)


PARTS = [  # (owner, attribute, name)
    (volume, "neus_samples", "sampling (no grad)"),
    (neus_method, "render_neus", "render: the rest"),
    (GridNeuSField, "sdf", "field.sdf (no grad)"),
    (GridNeuSField, "geometry", "field.geometry (SDF + normal)"),
    (GridNeuSField, "feature", "field.feature"),
    (GridNeuSField, "color", "field.color"),
    (GridNeuSField, "surface_area", "area prior"),
    (GridNeuSField, "curvature_loss", "curvature prior"),
    (trainer, "compute_losses", "losses"),
    (torch.Tensor, "backward", "backward"),
    (torch.optim.Optimizer, "zero_grad", "zero_grad"),
    (trainer, "atomic_write_bytes", "checkpoint write"),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--object", default="cow", choices=list(MESHES))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--from-step", type=int, default=1, help="measure from this step (the fine grid: past 500)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--ops", action="store_true", help="also torch.profiler's per-op tables")
    p.add_argument("--rows", type=int, default=25, help="ops shown")
    p.add_argument("--overrides", nargs="*", default=[])
    args = p.parse_args(argv)
    set_quiet(True)
    torch.set_num_threads(args.threads)
    cfg = load_config("cpu", args.overrides).recon
    views, _ = gt_views(args.object, size=args.size)
    first, last = max(1, args.from_step), max(1, args.from_step) + args.steps
    timer = PartTimer()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        reconstruct(cfg, views, tmp, max_steps=1, resume=False)  # the start, cached in tmp, and one step
        start_s = time.perf_counter() - t0
        if first > 1:
            reconstruct(cfg, views, Path(tmp), max_steps=first, resume=True)
        (Path(tmp) / "kept.pt").write_bytes((Path(tmp) / "checkpoint.pt").read_bytes())
        for owner, attr, name in PARTS:
            timer.wrap(owner, attr, name)
        step_t0, cpu_t0 = time.perf_counter(), time.process_time()
        reconstruct(cfg, views, Path(tmp), max_steps=last, resume=True)
        wall, cpu = time.perf_counter() - step_t0, time.process_time() - cpu_t0
        parts = dict(timer.seconds)
        if args.ops:
            (Path(tmp) / "checkpoint.pt").write_bytes((Path(tmp) / "kept.pt").read_bytes())
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                reconstruct(cfg, views, Path(tmp), max_steps=last, resume=True)
    n = args.steps
    print(f"{args.object}, {args.size} px, CPU preset {' '.join(args.overrides)}, {args.threads} thread(s) "
          f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}): start + "
          f"1 step {start_s:.1f} s; steps {first}-{last}: {1000 * wall / n:.0f} ms wall, {1000 * cpu / n:.0f} ms CPU "
          f"per step (set-up of the resumed call included)\n")
    print("| part | ms per step | share |\n|---|---|---|")
    for name, s in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1000 * s / n:.1f} | {100 * s / wall:.0f}% |")
    rest = wall - sum(parts.values())
    print(f"| everything else (ray batches, optimizer step, guard, set-up) | {1000 * rest / n:.1f} | "
          f"{100 * rest / wall:.0f}% |")
    if args.ops:
        events = prof.key_averages()
        print("\nbackward nodes, CPU ms per step (their ops included):")
        for e in sorted(events, key=lambda e: -e.cpu_time_total)[:200]:
            if e.key.startswith("autograd::engine::evaluate_function: ") and e.cpu_time_total / n > 500:
                print(f"  {e.cpu_time_total / 1000 / n:7.1f}  {e.key.split(': ', 1)[1]}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
