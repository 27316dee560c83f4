"""bench_recon for a GPU machine that cannot install open3d (its 105 MB wheel is too large to carry there):
render the views and the grid fields' starting SDFs here, reconstruct there, score the meshes back here.

    PRESET=default python experiments/bench_recon_carried.py views .gpu/views  # here: GT views at 256 px + inits
    PRESET=default python experiments/bench_recon_carried.py run .gpu/views $OUT cow spot   # on the GPU
    python experiments/bench_recon_carried.py score $OUT                       # here: hull + metrics table

The grid fields' start (the hull's exact mesh distance, its unseen base relaxed and the rest of its unseen
surface filled: recon/unseen.py) needs open3d, so ``views`` computes it here from the views as written, for
the preset's grid resolutions, into ``init.pt`` beside each object's views; ``run`` uses it where open3d is
missing. The row's ``init`` says which start was used (without ``init.pt`` either: the carved grid's
distance transform and no unseen fill).
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
        export_init(Path(folder) / name)


def init_resolutions(cfg) -> set[int]:
    """The grid resolutions a hull-initialised NeuS / voxel field of ``cfg`` starts from."""
    return {cfg.neus.grid_resolution, cfg.voxel.resolution}


def export_init(folder: Path) -> None:
    """``folder/init.pt``: {resolution: SDF [R^3]} as reconstruct's ``hull_init_sdf`` computes it here."""
    from img2mesh.recon.reconstruct import hull_for, hull_init_sdf, resize_views, sampling_box

    cfg = load_config(os.environ.get("PRESET", "default")).recon
    views = resize_views(read_views(folder), cfg.image_size)  # as written: the GPU reads the same PNGs
    hull = hull_for(cfg, views)
    box = sampling_box(cfg, hull)
    cameras = torch.as_tensor(np.stack([v.camera.position for v in views]), dtype=torch.float32)
    t0 = time.time()
    sdf = {r: hull_init_sdf(cfg, hull, box, r, cameras) for r in init_resolutions(cfg)}
    torch.save({"box": [b.tolist() for b in box], "sdf": sdf, "seconds": time.time() - t0}, folder / "init.pt")


def carried_init(folder: Path):
    """A stand-in for ``hull_init_sdf`` that returns ``folder/init.pt``'s SDF, and the seconds it took here;
    (None, 0) without that file."""
    path = folder / "init.pt"
    if not path.exists():
        return None, 0.0
    saved = torch.load(path)

    def hull_init_sdf(cfg, hull, box, resolution, cameras):
        if not np.allclose(np.asarray(saved["box"]), np.stack(box), atol=1e-5) or resolution not in saved["sdf"]:
            raise RuntimeError(f"{path} was made for another box or resolution: run `views` again")
        return saved["sdf"][resolution].clone()

    return hull_init_sdf, float(saved["seconds"])


def run(folder: str, out: str, objects: list[str]) -> None:
    try:
        import open3d  # noqa: F401
        has_open3d = True
    except ImportError:
        has_open3d = False
    recon_module = sys.modules["img2mesh.recon.reconstruct"]
    own_init, own_distance = recon_module.hull_init_sdf, recon_module.hull_signed_distance
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset, methods = os.environ.get("PRESET", "default"), os.environ.get("METHODS", "neus").split(",")
    torch.ones(1, device=device).sum().item()  # the CUDA context outside the timings
    rows = []
    for name in objects:
        views = read_views(Path(folder) / name)
        init, no_open3d, init_seconds = "mesh distance", [], 0.0
        recon_module.hull_init_sdf, recon_module.hull_signed_distance = own_init, own_distance  # per object
        if not has_open3d:
            carried, init_seconds = carried_init(Path(folder) / name)
            if carried is not None:
                recon_module.hull_init_sdf = carried
                init = "mesh distance + unseen priors, computed here and carried"
            else:  # the carved grid's distance alone; the fill's SDF update needs open3d too
                recon_module.hull_signed_distance = lambda hull, points, band_voxels=3.0: hull.hull_sdf(points)
                init, no_open3d = "grid distance, no unseen fill", ["recon.unseen_fill=false"]
        for method in methods:
            full = load_config(preset, [f"recon.method={method}", *no_open3d])
            cfg = full.recon
            torch.cuda.synchronize() if device == "cuda" else None
            t0 = time.time()
            result = reconstruct(cfg, views, Path("/tmp/carried") / f"{name}-{method}", device=device, resume=False)
            mesh = field_to_mesh(load_field(result.field_path, device=device), full.export.mesh)
            np.savez_compressed(Path(out) / f"{name}-{method}.npz", vertices=np.asarray(mesh.vertices, np.float32),
                                faces=np.asarray(mesh.faces, np.int32))
            rows.append({"object": name, "method": method, "preset": preset, "steps": result.steps, "init": init,
                         "seconds": round(time.time() - t0 + init_seconds, 1),
                         "init_seconds_carried": round(init_seconds, 1), "device": torch.cuda.get_device_name() if
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
