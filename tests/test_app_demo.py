"""`img2mesh demo`: the whole chain with a tiny random model, no weights, no rembg model, no download."""
import json

import trimesh

from img2mesh import demo
from img2mesh.cli import main


def test_the_demo_runs_the_chain_without_any_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "no-rembg-model"))  # the demo needs none
    monkeypatch.setattr(demo, "RECON", [*demo.RECON, "recon.steps=30", "export.turntable_frames=4"])
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "-q"]) == 0
    stdout = capsys.readouterr().out
    assert f"mesh: {out / 'mesh.glb'}" in stdout and "tiny RANDOM model" in stdout  # says what it is
    mesh = trimesh.load(out / "mesh.ply", process=False)
    width, depth, height = mesh.extents
    assert height > 1.2 * max(width, depth)  # the vase's outline made the shape: taller than wide
    meta = json.loads((out / "run.json").read_text())
    assert set(meta["stages"]) >= {"recon", "export"} and (out / "views" / "transforms.json").is_file()
    assert main(["export", str(out), "-q", "export.target_faces=1000"]) == 0  # an ordinary run folder
