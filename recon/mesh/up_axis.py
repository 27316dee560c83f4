"""Which way is up in a mesh file, when the file does not say: the policy every reader of user meshes uses."""
from __future__ import annotations

import os
from pathlib import Path

from .io import obj_is_y_up


def file_up_axis(path: str | os.PathLike, up: str | None = None) -> tuple[str, str]:
    """(up axis, why) for reading a mesh file: ``up`` when given; y for glTF (its specification) and for
    img2mesh's OBJ files (marked by their first line); z for the other files img2mesh writes (a run's mesh.ply,
    `render`'s gt_mesh.ply, older runs' mesh.obj: the z-up world), found by the run.json / render.json beside
    them; otherwise y, the convention of OBJ and PLY files from Blender, scanners and the common test models."""
    path = Path(path)
    if up is not None:
        return up, "as given"
    if path.suffix.lower() in (".glb", ".gltf"):
        return "y", "glTF files are y-up"
    if path.suffix.lower() == ".obj" and obj_is_y_up(path):
        return "y", "an img2mesh OBJ, y-up"
    if (path.parent / "run.json").is_file() or (path.parent / "render.json").is_file():
        return "z", "an img2mesh output, z-up"
    return "y", "the usual up axis of OBJ/PLY files"
