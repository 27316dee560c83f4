"""The tool subcommands chained as a user would: render a real mesh -> recon --views -> export -> metrics."""
import json

import numpy as np
import trimesh

from img2mesh.cli import main
from img2mesh.data.views import read_views


def test_render_recon_export_metrics(shared, tmp_path, capsys):
    views_dir, run = tmp_path / "views", tmp_path / "run"
    assert main(["render", str(shared / "meshes" / "suzanne.obj"), "--up", "y", "--normalize", "1", "--layout",
                 "ring12", "--size", "48", "--out", str(views_dir), "--quiet"]) == 0
    assert "12 views" in capsys.readouterr().out
    views = read_views(views_dir)
    assert len(views) == 12 and views[0].rgba.shape == (48, 48, 4)
    depth = np.load(views_dir / "r_000_depth.npy")
    assert depth.shape == (48, 48) and 1.0 < depth[depth > 0].min() < 2.0  # camera at radius 2
    assert (views_dir / "r_000_normal.png").is_file() and (views_dir / "gt_mesh.ply").is_file()

    code = main(["recon", "--views", str(views_dir), "--out", str(run), "--quiet", "recon.method=hull",
                 "recon.init.hull_resolution=48", "export.mesh.resolution=48", "export.turntable_frames=4"])
    capsys.readouterr()
    assert code == 0 and (run / "mesh.ply").is_file() and (run / "turntable.mp4").is_file()
    coarse = len(trimesh.load(run / "mesh.ply", process=False).faces)
    assert main(["export", str(run), "--quiet", "recon.init.hull_resolution=48", "recon.method=hull",
                 "export.mesh.resolution=48", "export.target_faces=1000", "export.turntable_frames=4"]) == 0
    capsys.readouterr()
    assert len(trimesh.load(run / "mesh.ply", process=False).faces) < min(coarse, 1100)  # re-meshed, decimated

    assert main(["metrics", str(run / "mesh.ply"), str(views_dir / "gt_mesh.ply"), "--json", "--out",
                 str(tmp_path / "m")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["chamfer"] < 0.03 and scores["iou"] > 0.7 and 0.5 < scores["fscore"] <= 1.0
    assert json.loads((tmp_path / "m" / "metrics.json").read_text()) == scores
    assert main(["metrics", str(run / "mesh.ply"), str(tmp_path / "missing.obj")]) == 2
    assert "missing.obj" in capsys.readouterr().err
