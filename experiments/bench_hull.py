"""Silhouette-carving baseline on the shared meshes: the yardstick every optimiser must beat.

    python experiments/bench_hull.py [--objects cow spot stanford-bunny suzanne] [--resolution 128]

Ground truth: ``gt_views`` (36 views, ring at 20 deg, radius 2, FoV 49.1 deg, 128 px; meshes z-up, centred,
longest side 1). Metrics: ``mesh_metrics`` (GT-normalised; Chamfer, F-score at 0.01, volume IoU on 64^3 cells
over [-1, 1]^3). Prints one markdown table; times are wall-clock on this machine.
"""
from __future__ import annotations

import argparse
import time

from gt_views import MESHES, gt_views

from img2mesh.data.progress import set_quiet
from img2mesh.recon.start.hull import carve_hull
from img2mesh.recon.mesh.metrics import mesh_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", nargs="+", default=list(MESHES))
    parser.add_argument("--resolution", type=int, nargs="+", default=[128], help="carving grid(s) per side")
    parser.add_argument("--views", type=int, default=36)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--elevation", type=float, default=20.0)
    args = parser.parse_args()
    set_quiet(True)

    print(f"| object | method | views | px | grid | render s | carve s | faces | Chamfer | F-score | IoU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.objects:
        t0 = time.perf_counter()
        views, gt = gt_views(name, n=args.views, elevation=args.elevation, size=args.size)
        t_render = time.perf_counter() - t0
        for res in args.resolution:
            t0 = time.perf_counter()
            hull = carve_hull(views, res)
            t_carve = time.perf_counter() - t0
            m = mesh_metrics(hull.mesh, gt)
            print(f"| {name} | hull | {args.views} | {args.size} | {res} | {t_render:.1f} | {t_carve:.1f} | "
                  f"{len(hull.mesh.faces)} | {m['chamfer']:.4f} | {m['fscore']:.3f} | {m['iou']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
