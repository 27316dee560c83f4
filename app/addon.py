"""`img2mesh blender-addon --out DIR`: the Blender add-on (app/blender_addon/) as one installable zip."""
from __future__ import annotations

import zipfile
from pathlib import Path

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_path

# read as files, never imported here: the add-on imports bpy, which only Blender has
SOURCE = Path(__file__).resolve().parent / "blender_addon"
FILES = ("__init__.py", "blender_manifest.toml")


def build_addon(out_dir: str | Path) -> Path:
    """Write ``out_dir/img2mesh_blender-VERSION.zip`` (a Blender extension, 4.2 and later); returns its path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file: give a folder")
    version = next(line.split("=", 1)[1].strip().strip('"')
                   for line in (SOURCE / "blender_manifest.toml").read_text().splitlines()
                   if line.startswith("version"))
    target = out_dir / f"img2mesh_blender-{version}.zip"
    with atomic_path(target) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for name in FILES:
            z.write(SOURCE / name, name)
    return target
