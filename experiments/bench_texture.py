"""Benchmark: textured vs vertex-coloured exports, at full resolution and decimated: file sizes, faces, time,
and PSNR of the exported files rendered from the ground-truth views.

    python experiments/bench_texture.py                                 # spot, colour field = the GT texture
    python experiments/bench_texture.py --field neus                    # a grid NeuS trained on the views (cpu)
    python experiments/bench_texture.py --faces 0 5000 20000 --texture-size 2048

Views: 36 cameras on a ring at 20 deg elevation (experiments/gt_views.py). The surface and its colour:
- ``--field gt``: marching cubes (``export.mesh.resolution``, 256^3) of the ground truth's signed distance,
  coloured by the ground-truth texture at the closest surface point: the export alone is measured;
- ``--field neus``: the CPU preset's NeuS trained on the 128 px views, meshed and coloured as `img2mesh export`
  does (``field_to_mesh``, its view-independent colour). Its colour has learned the views' lighting, so its
  files are rendered unlit (the ground truth's, lit like the views).
Each row is ``make_asset`` + ``write_asset`` (world origin, so the views' cameras apply) with the textured GLB,
or the vertex-coloured PLY, loaded back from disk and rendered by the project's mesh renderer. PSNR is over
the pixels the object covers in the view or the render, composited on white. ``size`` sums the files of a
format (OBJ: .obj + .mtl + .png).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_recon.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gt_views import gt_views  # noqa: E402

from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.data.views import on_white  # noqa: E402
from img2mesh.recon import field_colors, field_to_mesh, load_field, reconstruct  # noqa: E402
from img2mesh.recon.mesh.asset import make_asset, write_asset  # noqa: E402
from img2mesh.recon.mesh.io import load_mesh, raycasting_scene, surface_colors  # noqa: E402
from img2mesh.recon.mesh.meshing import extract_mesh  # noqa: E402
from img2mesh.recon.mesh.raycast import Light, render_mesh  # noqa: E402


def gt_field(gt, resolution: int, shell: float = 0.0):
    """(mesh, colour function) of the ground truth: marching cubes of its signed distance, its texture.
    ``shell`` > 0: of its unsigned distance minus ``shell`` instead, a thin closed shell around the surface, for
    meshes with holes (their inside is undefined, and ray parity leaks the outside in)."""
    import open3d as o3d

    scene = raycasting_scene(gt.vertices, gt.faces)
    if shell > 0:
        sdf = lambda p: torch.from_numpy(scene.compute_distance(o3d.core.Tensor(p.numpy())).numpy() - shell)  # noqa: E731
    else:
        sdf = lambda p: torch.from_numpy(scene.compute_signed_distance(o3d.core.Tensor(p.numpy())).numpy())  # noqa: E731

    def color(p):
        q = scene.compute_closest_points(o3d.core.Tensor(p.numpy().astype(np.float32)))
        uv = q["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        return torch.from_numpy(surface_colors(gt, q["primitive_ids"].numpy().astype(np.int64), bary))

    return extract_mesh(sdf, -0.55, 0.55, resolution, 0.0, inside="below"), color


def trained_field(views, work: Path, device: str):
    """(mesh, colour function) of the CPU preset's NeuS trained on ``views`` (reused from ``work`` if there)."""
    full = load_config("cpu")
    path = work / "neus" / "field.pt"
    if not path.is_file():
        path = reconstruct(full.recon, views, work / "neus", seed=0, device=device, resume=False).field_path
    field = load_field(path, device=device)
    return field_to_mesh(field, full.export.mesh), field_colors(field)


def masked_psnr(pred: list, views) -> float:
    errors, count = 0.0, 0
    for r, v in zip(pred, views):
        mask = (r.rgba[..., 3] > 0) | (v.rgba[..., 3] > 0)
        diff = on_white(r.rgba)[mask] - on_white(v.rgba)[mask]
        errors, count = errors + float((diff ** 2).sum()), count + diff.size
    return float(-10 * np.log10(errors / count))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--object", default="spot")
    p.add_argument("--field", default="gt", choices=["gt", "neus"])
    p.add_argument("--faces", nargs="+", type=int, default=[0, 5000], help="export.target_faces values")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--size", type=int, default=256, help="view size in px for the PSNR")
    p.add_argument("--resolution", type=int, default=256, help="marching cubes grid of the gt field")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="", help="folder for the files (default: a temporary one)")
    args = p.parse_args(argv)
    set_quiet(True)
    views, gt = gt_views(args.object, size=args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        t0 = time.time()
        if args.field == "gt":
            mesh, color = gt_field(gt, args.resolution)
        else:
            mesh, color = trained_field(gt_views(args.object, size=128)[0], work, args.device)
        print(f"field {args.field}: {len(mesh.faces)} faces meshed in {time.time() - t0:.1f} s", file=sys.stderr)
        cameras = [v.camera for v in views]
        # A trained field's colour already holds the views' lighting: render it unlit, or it is lit twice.
        light = Light() if args.field == "gt" else Light(ambient=1.0, diffuse=0.0)
        for faces in args.faces:
            for texture in (True, False):
                out = work / f"{faces}-{'tex' if texture else 'vc'}"
                t0 = time.time()
                asset = make_asset(mesh, color, target_faces=faces, texture=texture, texture_size=args.texture_size,
                                   origin="world", device=args.device)
                paths, files = write_asset(asset, out)
                seconds = time.time() - t0
                sizes = {f: sum(x.stat().st_size for x in files if x.stem.startswith("mesh") and
                                (x.suffix[1:] == f or (f == "obj" and x.suffix in (".mtl", ".png"))))
                         for f in paths}
                shown = load_mesh(paths["glb"] if texture else paths["ply"])
                row = {"target_faces": faces, "texture": texture, "faces": len(shown.faces),
                       "seconds": round(seconds, 1), **{k: v for k, v in asset.stats.items() if k.endswith("seconds")},
                       "size_kb": {f: round(s / 1024) for f, s in sizes.items()},
                       "psnr": round(masked_psnr(render_mesh(shown, cameras, light=light), views), 2)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{args.object}, field {args.field}, {len(views)} views at {args.size} px, texture {args.texture_size} px")
    print(f"{'target':>7} {'colour':<8} {'faces':>7} {'time s':>7} {'OBJ KB':>7} {'GLB KB':>7} {'PLY KB':>7} {'PSNR':>6}")
    for r in rows:
        s = r["size_kb"]
        print(f"{r['target_faces']:>7} {'texture' if r['texture'] else 'vertex':<8} {r['faces']:>7} {r['seconds']:>7.1f} "
              f"{s['obj']:>7} {s['glb']:>7} {s['ply']:>7} {r['psnr']:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
