"""The export stage after meshing: the asset (decimation, colours, unwrap, bake), its files, the views grid and
the turntable, written side by side.

    result = export_assets(cfg.export, mesh, color_fn, views, run_dir, device)

The grid needs only the views and starts at once; the files and the turntable need only the finished asset.
They run in a small thread pool:
the OBJ / GLB / PLY writers, the PNG encoder, the ray caster and ffmpeg (a child process) spend much of their
time outside the GIL. ``result.timings`` holds each part's wall time and the CPU time of its thread (the
figure that means something on a machine other jobs share).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import trimesh

from img2mesh.data.views import Views

from .config import ExportConfig

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    meshes: dict[str, Path]  # format -> path
    outputs: list[Path]  # every file written (the OBJ's MTL and texture included)
    stats: dict  # the asset's (faces, texture size, its steps' seconds)
    grid: Path | None = None
    turntable: Path | None = None
    timings: dict = field(default_factory=dict)  # part -> {"wall_s", "cpu_s"}


def timed(timings: dict, name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall time and its thread's CPU time recorded under ``timings[name]``."""
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        return fn(*args, **kwargs)
    finally:
        timings[name] = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.thread_time() - cpu, 3)}


def export_assets(e: ExportConfig, mesh: trimesh.Trimesh, color_fn, views: Views | None, root: Path,
                  device: torch.device | str = "cpu", *, workers: int = 3) -> ExportResult:
    """Make the asset from ``mesh`` and ``color_fn`` (see recon.mesh.asset) and write, in parallel, its files in
    ``e.formats``, ``views_grid.png`` (``e.grid``, with views) and ``turntable.mp4`` (``e.turntable``)."""
    from img2mesh.recon import make_asset, render_turntable, views_grid, write_asset

    from .stages import labelled

    timings: dict = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {}
        if e.grid and views is not None and len(views):  # needs only the views: starts at once
            futures["grid"] = pool.submit(timed, timings, "grid", views_grid, [labelled(v) for v in views],
                                          root / "views_grid.png")
        asset = timed(timings, "asset", make_asset, mesh, color_fn, target_faces=e.target_faces, texture=e.texture,
                      texture_size=e.texture_size, origin=e.origin, scale=e.scale, chunk=e.mesh.chunk, device=device)
        log.info("mesh: %d faces%s", len(asset.mesh.faces),
                 f", {e.texture_size} px texture" if "texture_size" in asset.stats else "")
        t0 = time.perf_counter()
        for fmt in e.formats:
            futures[fmt] = pool.submit(timed, timings, fmt, write_asset, asset, root, (fmt,), stem="mesh")
        if e.turntable:
            elevation = views[0].camera.elevation if views is not None and len(views) else 20.0
            # its own copy: the renderer fills the mesh's caches while the writers read it
            futures["turntable"] = pool.submit(timed, timings, "turntable", render_turntable,
                                               asset.mesh.copy(include_cache=True), root / "turntable.mp4",
                                               n_frames=e.turntable_frames, size=e.turntable_size, elevation=elevation)
        done = {name: f.result() for name, f in futures.items()}  # re-raises the first error
    timings["files_wall_s"] = round(time.perf_counter() - t0, 3)
    meshes, outputs = {}, []
    for fmt in e.formats:  # in the configured order, as write_asset returns them
        paths, files = done[fmt]
        meshes.update(paths)
        outputs.extend(files)
    result = ExportResult(meshes, outputs, asset.stats, timings=timings)
    for name in ("grid", "turntable"):
        if name in done:
            setattr(result, name, done[name])
            outputs.append(done[name])
    return result

