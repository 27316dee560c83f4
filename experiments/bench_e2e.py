"""End-to-end benchmark: wall time and peak memory of each stage for one image.

    python experiments/bench_e2e.py --size tiny --device cpu                 # CPU, tiny random Zero-1-to-3
    python experiments/bench_e2e.py --size full --device cuda --config default  # GPU, full-size architecture

Zero-1-to-3 is built with random weights at the requested size (timing does not depend on weight values),
saved as a diffusers folder and loaded through `--model PATH` like real weights. Each stage runs as its own
resumed call, so its time and peak memory are measured alone: peak resident memory sampled every 20 ms on
CPU, `torch.cuda.max_memory_allocated` on CUDA. Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

import img2mesh
from img2mesh.diffusion import build_random_zero123

STAGES = ("preprocess", "views", "recon", "export")


class PeakRSS:
    """Peak resident set size of this process while the block runs (Linux /proc; 0 elsewhere)."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        while not self._stop.is_set():
            try:
                with open("/proc/self/statm") as f:
                    self.peak = max(self.peak, int(f.read().split()[1]) * page)
            except OSError:
                return
            self._stop.wait(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--scene", default="pikachu")
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. diffusion.steps=5 recon.steps=200")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    model_dir = work / f"zero123-{args.size}"
    build_random_zero123(args.size, seed=0).save_pretrained(model_dir)
    out = args.out or work / "run"
    overrides = [f"device={args.device}", f"diffusion.model={model_dir}", *args.overrides]
    rows = []
    for i, stage in enumerate(STAGES):
        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with PeakRSS() as rss:
            img2mesh.run(args.scene if i == 0 else None, config=args.config, overrides=overrides,
                         out=out if i == 0 else None, resume=None if i == 0 else out, stop_after=stage, quiet=True)
        wall = time.perf_counter() - start
        gpu = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        rows.append((stage, wall, rss.peak / 2**30, gpu))

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"\nimg2mesh end-to-end, scene {args.scene}, Zero-1-to-3 {args.size} (random weights), "
          f"preset {args.config}, {device}; overrides: {' '.join(args.overrides) or '-'}\n")
    print("| stage | wall s | peak RSS GiB | peak CUDA GiB |\n|---|---|---|---|")
    for stage, wall, rss, gpu in rows:
        print(f"| {stage} | {wall:.1f} | {rss:.2f} | {'-' if gpu is None else f'{gpu:.2f}'} |")
    print(f"| total | {sum(r[1] for r in rows):.1f} | {max(r[2] for r in rows):.2f} | "
          f"{'-' if rows[0][3] is None else f'{max(r[3] for r in rows):.2f}'} |")
    print(f"\nrun directory: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
