"""`img2mesh demo`: the whole chain in about a minute on a CPU, with no download: a check of the installation.

A tiny Zero-1-to-3 with random weights (the real architecture, built in memory) generates the views of a
round vase drawn here, so its colours are noise; the reconstruction and export run as in any run. The vase is
round about its vertical axis, so its outline is the same from every camera of a ring: the input's mask is
each generated view's mask (instead of rembg's, which needs its model), and the mesh comes out vase-shaped.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.preprocess import PreparedInput

log = logging.getLogger(__name__)

ELEVATION = 20.0  # the input camera, above the vase's equator
# Small enough for about a minute on 2 CPU cores: few views and steps, a small NeuS, a small mesh.
VIEWS = ["diffusion.num_views=6", "diffusion.steps=4"]
RECON = ["recon.steps=200", "recon.image_size=64", "recon.rays_per_batch=512", "recon.init.hull_resolution=48",
         "recon.neus.resolution=48", "recon.neus.color_resolution=24", "recon.checkpoint_every=0",
         "export.mesh.resolution=64", "export.target_faces=5000", "export.texture_size=256",
         "export.turntable_frames=12"]
NOTICE = ("a tiny RANDOM model made these views: their colours are noise and only the shape (from the outlines) "
          "is meaningful; real weights: `img2mesh run --image PHOTO` (GPU) or `-c cpu`")


def vase() -> trimesh.Trimesh:
    """A closed vase, round about the z axis, about one unit tall, with colour bands by height."""
    z = np.linspace(-0.45, 0.45, 24)
    radius = 0.22 + 0.12 * np.sin((z + 0.45) / 0.9 * 1.6 * np.pi) ** 2
    profile = np.column_stack([np.concatenate([[0.0], radius, [0.0]]), np.concatenate([[z[0]], z, [z[-1]]])])
    mesh = trimesh.creation.revolve(profile, sections=64)
    band = (np.floor((mesh.vertices[:, 2] + 0.45) / 0.15) % 2)[:, None]
    mesh.visual.vertex_colors = np.where(band > 0, [40, 110, 200, 255], [230, 150, 40, 255]).astype(np.uint8)
    return mesh


def input_view(size: int = 256) -> PreparedInput:
    """The vase as the generator's input: on white, at Zero-1-to-3's input camera (azimuth 90, radius 2)."""
    from img2mesh.recon import render_mesh

    camera = camera_from_spherical(ELEVATION, 90.0, width=size)
    rgba = render_mesh(vase(), [camera], background=1.0)[0].rgba
    return PreparedInput(rgba=rgba.astype(np.float32), camera=camera)


def run_demo(out, quiet: bool = False, threads: int | None = None, overrides=()):
    """Make the demo's run folder ``out`` (default runs/demo/<date-time>), a recon run of the generated views
    (`img2mesh export` works on it); ``overrides`` go on top of the demo's settings."""
    from img2mesh.api import reconstruct_views
    from img2mesh.data.views import write_views
    from img2mesh.diffusion import build_random_zero123, generate_views

    from .config import load_config
    from .rundir import check_new_folder

    out = Path(out) if out is not None else Path("runs") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    check_new_folder(out, "choose another --out")
    extra = [*overrides, *([f"threads={threads}"] if threads is not None else [])]
    cfg = load_config("cpu", [*VIEWS, *RECON, *extra])
    log.warning(NOTICE)
    t0 = time.perf_counter()
    model = build_random_zero123("tiny", seed=0)
    prepared = input_view()
    outline = (prepared.rgba[..., 3] * 255 + 0.5).astype(np.uint8)
    views = generate_views(cfg.diffusion, prepared, model=model, seed=cfg.seed, device="cpu",
                           remove_background=lambda rgb: outline)
    with tempfile.TemporaryDirectory(prefix="img2mesh-demo-") as scratch:
        views_dir = Path(scratch) / "demo-views"
        write_views(views, views_dir)
        result = reconstruct_views(views_dir, config="cpu", overrides=[*VIEWS, *RECON, *extra], out=out,
                                   quiet=quiet)
    log.info("demo finished in %.0f s", time.perf_counter() - t0)
    return result
