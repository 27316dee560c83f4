"""bench_recon for a GPU machine that cannot install open3d (its 105 MB wheel is too large to carry there):
render the views here, reconstruct there, score the meshes back here.

    python experiments/bench_recon_carried.py views .gpu/views                 # here: GT views at 256 px
    PRESET=default python experiments/bench_recon_carried.py run .gpu/views $OUT cow spot   # on the GPU
    python experiments/bench_recon_carried.py score $OUT                       # here: hull + metrics table

On a machine without open3d the grid fields' hull initialisation falls back to the carved grid's distance
transform (the exact mesh distance needs open3d) and runs without the unseen fill (its SDF update needs open3d
too); the row's ``init`` says which was used.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.data.views import read_views, write_views  # noqa: E402
from img2mesh.recon.reconstruct import field_to_mesh, load_field, reconstruct  # noqa: E402

OBJECTS = ["cow", "spot", "stanford-bunny"]


def export_views(folder: str, size: int = 256) -> None:
    from gt_views import gt_views

    for name in OBJECTS:
        write_views(gt_views(name, size=size)[0], Path(folder) / name)


def run(folder: str, out: str, objects: list[str]) -> None:
    init, no_open3d = "mesh distance", []
    try:
        import open3d  # noqa: F401
    except ImportError:
        recon_module = sys.modules["img2mesh.recon.reconstruct"]
        recon_module.hull_signed_distance = lambda hull, points, band_voxels=3.0: hull.hull_sdf(points)
        init, no_open3d = "grid distance, no unseen fill", ["recon.unseen_fill=false"]  # the fill's SDF needs open3d
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset, methods = os.environ.get("PRESET", "default"), os.environ.get("METHODS", "neus").split(",")
    torch.ones(1, device=device).sum().item()  # the CUDA context outside the timings
    rows = []
    for name in objects:
        views = read_views(Path(folder) / name)
        for method in methods:
            cfg = load_config(preset, [f"recon.method={method}", *no_open3d]).recon
            torch.cuda.synchronize() if device == "cuda" else None
            t0 = time.time()
            result = reconstruct(cfg, views, Path("/tmp/carried") / f"{name}-{method}", device=device, resume=False)
            mesh = field_to_mesh(load_field(result.field_path, device=device), cfg.mesh)
            np.savez_compressed(Path(out) / f"{name}-{method}.npz", vertices=np.asarray(mesh.vertices, np.float32),
                                faces=np.asarray(mesh.faces, np.int32))
            rows.append({"object": name, "method": method, "preset": preset, "steps": result.steps, "init": init,
                         "seconds": round(time.time() - t0, 1), "device": torch.cuda.get_device_name() if
                         device == "cuda" else "cpu"})
            print(json.dumps(rows[-1]), flush=True)
            (Path(out) / "rows.json").write_text(json.dumps(rows, indent=1))  # after each: a timeout keeps the rest


def score(out: str) -> None:
    import trimesh
    from bench_recon import seen_chamfer, seen_points
    from gt_views import gt_views

    from img2mesh.recon import mesh_metrics

    hulls = {}
    for row in json.loads((Path(out) / "rows.json").read_text()):
        name = row["object"]
        views, gt = gt_views(name, size=256)
        cams = [v.camera for v in views]
        gt_seen = seen_points(gt, cams)
        if name not in hulls:
            cfg = load_config("cpu", ["recon.method=hull"]).recon
            hull = field_to_mesh(load_field(reconstruct(cfg, views, Path("/tmp/carried") / f"{name}-hull").field_path),
                                 cfg.mesh)
            hulls[name] = (mesh_metrics(hull, gt), seen_chamfer(hull, gt_seen, cams))
        z = np.load(Path(out) / f"{name}-{row['method']}.npz")
        mesh = trimesh.Trimesh(z["vertices"], z["faces"], process=False)
        m, seen = mesh_metrics(mesh, gt), seen_chamfer(mesh, gt_seen, cams)
        (hm, hseen) = hulls[name]
        print(f"{name:<15} {row['method']:<6} {row['preset']:<8} {row['steps']:>5} {row['seconds']:>7.1f} s  "
              f"Chamfer {m['chamfer']:.5f} ({m['chamfer'] / hm['chamfer']:.2f}x hull {hm['chamfer']:.5f})  "
              f"seen {seen:.5f} ({seen / hseen:.2f}x)  F {m['fscore']:.3f}  IoU {m['iou']:.3f} "
              f"(hull {hm['iou']:.3f})")


if __name__ == "__main__":
    set_quiet(True)
    verb, *args = sys.argv[1:]
    {"views": lambda: export_views(*args), "run": lambda: run(args[0], args[1], args[2:] or OBJECTS),
     "score": lambda: score(*args)}[verb]()
