"""Real Blender (the `bpy` module, headless) against a real `img2mesh serve`: the add-on installs, generates a mesh
through the REST API and imports it at the 3D cursor, upright and textured; and a run's mesh.glb, mesh.obj (+ MTL
+ PNG) and mesh.ply imported with Blender's importers at their defaults stand upright with texture or colours.

bpy 5.0.1 pins numpy < 2 while img2mesh needs numpy >= 2, so Blender runs from its own environment, as it does
for users: $IMG2MESH_BLENDER_PYTHON, else .venv-blender/ beside the checkout (.ci/run makes it with
tests/blender-requirements.txt). Where neither has bpy the tests skip and say how to get it."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from img2mesh.cli import main
from img2mesh.data.progress import is_quiet, set_quiet
from img2mesh.recon.mesh.io import load_mesh
from fast import FAST
from servers import free_port, pikachu_photo, tiny_model, wait_for

ROOT = Path(__file__).resolve().parents[1]
RENDER_ENV = "IMG2MESH_BLENDER_RENDER"  # also copy the still here (docs/blender.png)
CURSOR = [0.5, -1.0, 0.25]


def blender_python() -> str:
    for candidate in (os.environ.get("IMG2MESH_BLENDER_PYTHON"), str(ROOT / ".venv-blender" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            found = subprocess.run([candidate, "-c", "import bpy"], capture_output=True, timeout=120)
            if found.returncode == 0:
                return candidate
    pytest.skip("no Python with bpy 5.0.1 (it needs numpy < 2, img2mesh numpy >= 2): python3.11 -m venv "
                ".venv-blender && .venv-blender/bin/pip install -r tests/blender-requirements.txt (.ci/run does)")


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared):
    """The add-on run by Blender against a server with the tiny model; yields (what Blender saw, the run)."""
    python = blender_python()
    httpx = pytest.importorskip("httpx")
    from img2mesh.web import start

    tmp = tmp_path_factory.mktemp("blender")
    quiet = is_quiet()
    set_quiet(True)
    server = start(out=tmp / "runs", port=free_port(), model=str(tiny_model(tmp)), preset="cpu", overrides=FAST,
                   quiet=True)
    try:
        assert main(["blender-addon", "--out", str(tmp / "addon"), "--quiet"]) == 0
        (addon,) = (tmp / "addon").glob("img2mesh_blender-*.zip")
        photo = pikachu_photo(tmp / "pika photo.jpg")
        # the importers read a finished run's files: one made through the API beside the add-on's
        with httpx.Client(base_url=server.url, timeout=60) as client, open(photo, "rb") as f:
            other = client.post("/api/jobs", files={"image": ("mug.jpg", f)}).json()["id"]
            assert wait_for(client, other)["status"] == "done"
        (run,) = (tmp / "runs" / "mug").iterdir()
        files = {"glb": str(run / "mesh.glb"), "obj": str(run / "mesh.obj"), "ply": str(run / "mesh.ply")}
        args = {"addon": str(addon), "server": server.url, "photo": str(photo), "cursor": CURSOR, "files": files,
                "result": str(tmp / "result.json"), "render": str(tmp / "blender.png")}
        started = time.perf_counter()
        done = subprocess.run([python, str(ROOT / "tests" / "blender_checks.py"), json.dumps(args)],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "HOME": str(tmp / "home")})  # the add-on installs in here
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        seen = json.loads((tmp / "result.json").read_text())
        seen["blender_seconds"] = time.perf_counter() - started
        if os.environ.get(RENDER_ENV):
            shutil.copyfile(args["render"], os.environ[RENDER_ENV])
        yield seen, run, tmp
    finally:
        server.close()
        set_quiet(quiet)


def blender_bbox_of_glb(path: Path) -> np.ndarray:
    """The GLB's box as Blender's glTF importer places it: glTF's (x, y, z) y-up is Blender's (x, -z, y)."""
    lo, hi = trimesh.load(path, force="mesh").bounds
    return np.array([[lo[0], -hi[2], lo[1]], [hi[0], -lo[2], hi[1]]])


def test_the_addon_generates_a_textured_mesh_at_the_3d_cursor(job):
    seen, _, tmp = job
    addon = seen["addon"]
    assert seen["install"] == ["FINISHED"]
    assert addon["result"] == ["FINISHED"] and addon["status"] == "imported" and not addon["error"], addon
    (run,) = (tmp / "runs" / "pika-photo").iterdir()
    glb = trimesh.load(run / "mesh.glb", force="mesh")
    assert addon["objects"] == 1 and addon["faces"] == len(glb.faces) and addon["names"] == ["img2mesh pika photo"]
    assert addon["textures"] and min(addon["textures"][0]["size"]) >= 256  # base colour from an image texture
    np.testing.assert_allclose(addon["bbox"], blender_bbox_of_glb(run / "mesh.glb") + CURSOR, atol=1e-4)
    # upright: Blender's z is img2mesh's world z (the z-up PLY of the same run)
    world = load_mesh(run / "mesh.ply").bounds
    np.testing.assert_allclose(addon["bbox"], world + CURSOR, atol=1e-4)
    print(f"blender: the add-on's job took {addon['seconds']:.1f} s from Generate to the imported mesh; Blender's "
          f"whole session (install, generate, three imports, the still) {seen['blender_seconds']:.1f} s")


def test_the_addon_sends_images_of_the_blend_file_as_files(job):
    import base64
    import io

    from PIL import Image

    seen, _, tmp = job
    (disk, disk_data), (packed, packed_data), (painted, painted_data) = seen["blend_images"]
    photo = (tmp / "pika photo.jpg").read_bytes()
    assert disk == "pika photo.jpg" and base64.b64decode(disk_data) == photo  # the file itself
    assert base64.b64decode(packed_data) == photo  # packed into the .blend: the same bytes
    with Image.open(io.BytesIO(base64.b64decode(painted_data))) as im:  # only pixels: sent as a PNG
        assert painted == "painted.png" and im.format == "PNG" and im.size == (96, 64)
        assert np.asarray(im.convert("RGB"))[0, 0].tolist() == pytest.approx([230, 51, 26], abs=3)  # its colour


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_a_runs_meshes_stand_upright_in_blenders_importers_at_their_defaults(job, fmt):
    seen, run, _ = job
    got = seen[fmt]
    world = load_mesh(run / "mesh.ply")  # img2mesh's z-up world, which is Blender's
    np.testing.assert_allclose(got["bbox"], world.bounds, atol=1e-4)
    top = world.vertices[np.argmax(world.vertices[:, 2])]
    np.testing.assert_allclose(got["top"], top, atol=1e-4)
    assert got["faces"] == len(world.faces)
    if fmt == "ply":  # vertex colours
        assert got["colour_attributes"] and got["colour_attributes"][0][1] > 10
    else:  # the baked texture, as the material's base colour
        assert got["textures"] and min(got["textures"][0]["size"]) >= 256


def test_the_addon_zip_holds_the_addon_and_its_manifest(tmp_path, capsys):
    import zipfile

    assert main(["blender-addon", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("img2mesh_blender-*.zip")
    assert str(path) in capsys.readouterr().out
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["__init__.py", "blender_manifest.toml"]
        source = z.read("__init__.py").decode()
    assert "import requests" not in source and "import torch" not in source and "from img2mesh" not in source
    compile(source, "__init__.py", "exec")  # Blender's Python is 3.11, like the tests'
    assert main(["blender-addon", "--out", str(path), "--quiet"]) == 2  # a file, not a folder


def test_img2mesh_obj_files_are_y_up_and_read_back_in_the_z_up_world(tmp_path):
    """Without Blender: the OBJ holds y-up coordinates (what Blender's OBJ importer assumes), says so on its
    first line, and load_mesh / render / metrics read it back into the z-up world; PLY stays z-up."""
    from img2mesh.recon.mesh.export import export_mesh
    from img2mesh.recon.mesh.up_axis import file_up_axis

    box = trimesh.creation.box(extents=(0.2, 0.4, 0.8))  # tall in z, the z-up world's up
    box.apply_translation((0.1, 0.0, 0.3))
    paths = export_mesh(box, tmp_path, ("obj", "ply", "glb"))
    (tmp_path / "run.json").write_text("{}")  # a run folder: its files are img2mesh's
    lines = paths["obj"].read_text().splitlines()
    assert lines[0] == "# img2mesh mesh, y up"
    raw = np.array([[float(x) for x in line.split()[1:4]] for line in lines if line.startswith("v ")])
    np.testing.assert_allclose(raw.max(axis=0) - raw.min(axis=0), [0.2, 0.8, 0.4], atol=1e-6)  # tall in y
    assert file_up_axis(paths["obj"]) == ("y", "an img2mesh OBJ, y-up")
    assert file_up_axis(paths["ply"])[0] == "z" and file_up_axis(paths["glb"])[0] == "y"
    for fmt in ("obj", "ply", "glb"):
        np.testing.assert_allclose(load_mesh(paths[fmt]).bounds, box.bounds, atol=1e-6)
    older = tmp_path / "older.obj"  # a z-up OBJ of an earlier version, without the first line
    older.write_text("\n".join(lines[1:]))
    np.testing.assert_allclose(load_mesh(older).bounds, trimesh.load(older, force="mesh").bounds, atol=1e-6)
