"""Finding ground-truth objects in a folder: a GSO download, a folder of test meshes, or loose mesh files.

Accepted layouts, per entry of the folder (sorted by name):
- ``<name>/meshes/model.obj`` (Google Scanned Objects, textures beside it),
- ``<name>/<one mesh file>`` (e.g. ``spot/spot_triangulated.obj``),
- ``<name>.obj|.ply|.glb|.gltf`` directly in the folder.
"""
from __future__ import annotations

from pathlib import Path

from img2mesh.data.errors import InputError

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply")


def find_objects(folder: str | Path, names: list[str] | None = None) -> dict[str, Path]:
    """name -> mesh path for every object in ``folder`` (only ``names`` if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"objects folder {folder} does not exist")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in MESH_SUFFIXES:
            found.setdefault(entry.stem, entry)
        elif entry.is_dir():
            gso = entry / "meshes" / "model.obj"
            meshes = [gso] if gso.is_file() else sorted(p for p in entry.iterdir()
                                                         if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
            if meshes:
                found.setdefault(entry.name, meshes[0])
    if names:
        missing = sorted(set(names) - set(found))
        if missing:
            raise InputError(f"object(s) {missing} not found in {folder}; it has {sorted(found)}")
        found = {n: found[n] for n in names}
    if not found:
        raise InputError(f"no meshes found in {folder} (expected <name>/meshes/model.obj or <name>.obj files)")
    return found
