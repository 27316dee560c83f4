"""Benchmark: the export stage after meshing (decimation, colours, unwrap, bake, OBJ / GLB / PLY, views grid,
turntable: ``img2mesh.app.export_assets``) at several face budgets on the shared meshes, and the PSNR of the
exported GLB against the views.

    python experiments/bench_export.py                                   # nine objects, default budgets
    python experiments/bench_export.py --objects spot cow --faces 0 20000 50000 --full-texture

The surface and its colour are the ground truth's (bench_texture.py ``--field gt``): marching cubes of its
signed distance at ``export.mesh.resolution`` (256^3; for the meshes that are not watertight, where inside
is undefined, a shell 3/4 voxel around the surface: its inner side doubles the faces, a pessimistic case) and its texture at the closest surface point (grey for
the objects without one), so only the export is measured and every object has its full-resolution mesh.
Views: 36 at 256 px on the 20 deg ring (the default preset's views); they are also the grid's input. Each row
runs the default preset's export settings with ``target_faces`` set (``origin=world`` so the cameras apply);
``--full-texture`` adds the textured full mesh (minutes of xatlas per object), else the full mesh is exported
with vertex colours (the same PSNR within a few hundredths of a dB at this face count; README "Textured
assets"). Times: ``asset`` (decimate + colours + unwrap + bake, one thread: its CPU seconds), ``unwrap``
(xatlas, inside asset), ``files`` (the formats, grid and turntable in parallel: wall) and ``cpu`` (every
thread and ffmpeg together). On a machine other jobs share, ``asset cpu + the largest part's cpu`` is the
estimate of the stage's wall time on two idle cores (``est s``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_recon.py

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_texture import gt_field, masked_psnr  # noqa: E402
from gt_views import MESHES, gt_views  # noqa: E402

from img2mesh.export_assets import export_assets  # noqa: E402
from img2mesh.config import load_config  # noqa: E402
from img2mesh.data.progress import set_quiet  # noqa: E402
from img2mesh.recon.mesh import texture as uv_texture  # noqa: E402
from img2mesh.recon.mesh.io import load_mesh  # noqa: E402
from img2mesh.recon.mesh.render import render_mesh  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process's threads and its finished children (ffmpeg)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_row(mesh, color, views, faces: int, texture: bool, out: Path, preset: str) -> dict:
    e = load_config(preset).export
    e.target_faces, e.texture, e.origin = faces, texture, "world"
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = export_assets(e, mesh, color, views, out)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    t = result.timings
    parts = [k for k in t if isinstance(t[k], dict) and k != "asset"]
    shown = load_mesh(result.meshes["glb" if texture else "ply"])
    return {"faces": len(shown.faces), "target_faces": faces, "texture": texture, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "asset_cpu_s": t["asset"]["cpu_s"], "unwrap_s": result.stats.get("unwrap_seconds"),
            "files_wall_s": t["files_wall_s"], "parts_cpu_s": {k: t[k]["cpu_s"] for k in parts},
            "est_s": round(t["asset"]["cpu_s"] + max(t[k]["cpu_s"] for k in parts), 1),
            "psnr": round(masked_psnr(render_mesh(shown, [v.camera for v in views]), views), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", nargs="+", default=list(MESHES), choices=list(MESHES))
    p.add_argument("--faces", nargs="+", type=int, default=[0, 10000, 20000, 30000, 50000],
                   help="export.target_faces values (0: the full mesh)")
    p.add_argument("--full-texture", action="store_true", help="texture the full mesh too (slow)")
    p.add_argument("--preset", default="default", help="the preset whose export settings run")
    p.add_argument("--piece-faces", type=int, default=None,
                   help="faces per piece the unwrapper charts at once (default: uv_texture.PIECE_FACES; 0: whole)")
    p.add_argument("--size", type=int, default=256, help="view size in px")
    p.add_argument("--signed", action="store_true",
                   help="signed distance for every mesh (right for spot: its holes are small enough for ray parity)")
    p.add_argument("--out", default="", help="write the rows here as JSON lines (appended)")
    args = p.parse_args(argv)
    set_quiet(True)
    if args.piece_faces is not None:
        uv_texture.PIECE_FACES = args.piece_faces
    rows = []
    for name in args.objects:
        views, gt = gt_views(name, size=args.size)
        resolution = load_config(args.preset).export.mesh.resolution
        mesh, color = gt_field(gt, resolution, shell=0.0 if gt.is_watertight or args.signed else 0.75 * 1.1 / resolution)
        for faces in args.faces:
            texture = faces != 0 or args.full_texture
            with tempfile.TemporaryDirectory() as tmp:
                row = {"object": name, "faces_meshed": len(mesh.faces), "piece_faces": uv_texture.PIECE_FACES,
                       **run_row(mesh, color, views, faces, texture, Path(tmp), args.preset)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"{'object':<15} {'meshed':>7} {'target':>7} {'colour':<8} {'faces':>7} {'asset':>6} {'unwrap':>6} "
          f"{'files':>6} {'cpu s':>6} {'est s':>6} {'PSNR':>6}")
    for r in rows:
        print(f"{r['object']:<15} {r['faces_meshed']:>7} {r['target_faces']:>7} "
              f"{'texture' if r['texture'] else 'vertex':<8} {r['faces']:>7} {r['asset_cpu_s']:>6.1f} "
              f"{r['unwrap_s'] or 0:>6.1f} {r['files_wall_s']:>6.1f} {r['cpu_s']:>6.1f} {r['est_s']:>6.1f} "
              f"{r['psnr']:>6.2f}")
    by_budget: dict = {}
    for r in rows:
        by_budget.setdefault(r["target_faces"], []).append(r)
    if 0 in by_budget:
        full = {r["object"]: r["psnr"] for r in by_budget[0]}
        print("\nbudget: mean PSNR - full's (worst object), worst est s")
        for faces, rs in sorted(by_budget.items()):
            d = [r["psnr"] - full[r["object"]] for r in rs if r["object"] in full]
            print(f"{faces:>7}: {np.mean(d):+.2f} dB ({min(d):+.2f}), {max(r['est_s'] for r in rs):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
