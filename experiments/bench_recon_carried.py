"""bench_recon for a GPU machine that cannot install open3d (its 105 MB wheel is too large to carry there):
render the views and compute each method's start here, reconstruct there, score the meshes back here.

    PRESET=default python experiments/bench_recon_carried.py views .gpu/views  # here: GT views at 256 px + starts
    PRESET=default python experiments/bench_recon_carried.py run .gpu/views $OUT cow spot   # on the GPU
    python experiments/bench_recon_carried.py score $OUT                       # here: hull + metrics table

The start (recon/start/prepare.py: the hull's exact mesh distance, its unseen base relaxed and the rest of its unseen
surface filled) needs open3d, so ``views`` computes it here from the views as written, for each method in
$METHODS, into ``start-METHOD.pt`` beside each object's views; ``run`` passes it to ``reconstruct`` (a start
made for other settings or views is refused by its key). A row's time adds the seconds the start took here.
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
from img2mesh.recon.methods import METHODS  # noqa: E402
from img2mesh.recon import field_to_mesh, load_field, reconstruct, resize_views  # noqa: E402
from img2mesh.recon.start.prepare import load_start, prepare_start, save_start, start_key  # noqa: E402

OBJECTS = ["cow", "spot", "stanford-bunny"]


def preset_and_methods() -> tuple[str, list[str]]:
    return os.environ.get("PRESET", "default"), os.environ.get("METHODS", "neus").split(",")


def export_views(folder: str, size: int = 256) -> None:
    from gt_views import gt_views

    preset, methods = preset_and_methods()
    for name in OBJECTS:
        write_views(gt_views(name, size=size)[0], Path(folder) / name)
        views = read_views(Path(folder) / name)  # as written: the GPU reads the same PNGs
        for method in methods:
            cfg = load_config(preset, [f"recon.method={method}"]).recon
            views_at_size = resize_views(views, cfg.image_size)
            start = prepare_start(cfg.init, views_at_size, METHODS[method].start_resolution(cfg))
            save_start(Path(folder) / name / f"start-{method}.pt", start)


def run(folder: str, out: str, objects: list[str]) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset, methods = preset_and_methods()
    torch.ones(1, device=device).sum().item()  # the CUDA context outside the timings
    rows = []
    for name in objects:
        views = read_views(Path(folder) / name)
        for method in methods:
            full = load_config(preset, [f"recon.method={method}"])
            cfg = full.recon
            views_at_size = resize_views(views, cfg.image_size)
            key = start_key(cfg.init, views_at_size, METHODS[method].start_resolution(cfg))
            start = load_start(Path(folder) / name / f"start-{method}.pt", key)
            if start is None:
                raise SystemExit(f"no start for {name} / {method} with these settings: run `views` here first")
            torch.cuda.synchronize() if device == "cuda" else None
            t0 = time.time()
            result = reconstruct(cfg, views, Path("/tmp/carried") / f"{name}-{method}", device=device, resume=False,
                                 start=start)
            mesh = field_to_mesh(load_field(result.field_path, device=device), full.export.mesh)
            np.savez_compressed(Path(out) / f"{name}-{method}.npz", vertices=np.asarray(mesh.vertices, np.float32),
                                faces=np.asarray(mesh.faces, np.int32))
            rows.append({"object": name, "method": method, "preset": preset, "steps": result.steps,
                         "seconds": round(time.time() - t0 + start.seconds, 1),
                         "start_seconds_here": round(start.seconds, 1), "device": torch.cuda.get_device_name() if
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
            full = load_config("cpu", ["recon.method=hull"])
            cfg = full.recon
            hull = field_to_mesh(load_field(reconstruct(cfg, views, Path("/tmp/carried") / f"{name}-hull").field_path),
                                 full.export.mesh)
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
