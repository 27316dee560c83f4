"""Benchmark: what each prior of the start (recon/start/prepare.py, recon/start/unseen.py) does to the initial shape, on
every shared mesh and view set, before any training.

    python experiments/bench_start.py                          # all nine objects, exact views
    python experiments/bench_start.py --objects ogre --sets exact moderate

Each row meshes the start's signed distance (marching cubes at 0 on its 128^3 grid, the largest part) and
scores it against the ground truth: with every prior on (the defaults), with the base relaxation off
(``base_relax_steps=0``), with its narrow-patch exemption off (``base_relax_min_size=0``), with the unseen
fill off (``unseen_fill=false``), and with all of them off (the hull's own distance). A prior pays where its
column beats the 'off' columns; cheap (seconds per object), so it covers the objects no preset was tuned on.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_recon.py

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gt_views import MESHES  # noqa: E402
from view_sets import VIEW_SETS, make_view_set  # noqa: E402

from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.recon import mesh_metrics  # noqa: E402
from img2mesh.recon.config import InitConfig  # noqa: E402
from img2mesh.recon.mesh.meshing import mesh_from_grid  # noqa: E402
from img2mesh.recon.start.prepare import prepare_start  # noqa: E402
from img2mesh.recon.train.view_corrections import view_confidence  # noqa: E402

VARIANTS = {
    "all priors": {},
    "no base relax": {"base_relax_steps": 0},
    "no narrow exemption": {"base_relax_min_size": 0.0},
    "no unseen fill": {"unseen_fill": False},
    "hull only": {"base_relax_steps": 0, "unseen_fill": False},
}


def start_chamfer(views, gt, cfg: InitConfig, resolution: int) -> float:
    start = prepare_start(cfg, views, resolution, view_confidence(views, 0.5))
    values = start.initial_sdf.reshape(resolution, resolution, resolution).numpy()
    mesh = mesh_from_grid(values, start.box[0], start.box[1], 0.0, inside="below")
    return mesh_metrics(mesh, gt)["chamfer"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", nargs="+", default=list(MESHES))
    p.add_argument("--sets", nargs="+", default=["exact"], choices=VIEW_SETS)
    p.add_argument("--resolution", type=int, default=128, help="the start's SDF grid (the NeuS grid's)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    set_quiet(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'object':<15} {'set':<9} " + " ".join(f"{v:>19}" for v in VARIANTS) + "   (start Chamfer)")
    for name in args.objects:
        for view_set in args.sets:
            views, gt = make_view_set(name, view_set)
            scores = [start_chamfer(views, gt, dataclasses.replace(InitConfig(), **kw), args.resolution)
                      for kw in VARIANTS.values()]
            print(f"{name:<15} {view_set:<9} " + " ".join(f"{c:>19.5f}" for c in scores), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
