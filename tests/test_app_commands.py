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


def test_render_and_metrics_refuse_meshes_out_of_frame(shared, tmp_path, capsys):
    """cow.obj is a y-up OBJ ten units long: read as y-up by default, and refused (with the flag that fixes it)
    where it would put the cameras inside it or be compared with a unit-size mesh."""
    cow, views_dir = shared / "meshes" / "cow.obj", tmp_path / "views"
    small = ["--layout", "ring4", "--size", "32"]
    assert main(["render", str(cow), *small, "--out", str(views_dir)]) == 2
    err = capsys.readouterr().err
    assert "2 of 4 cameras are inside the mesh's bounding box" in err and "--normalize 1" in err
    assert "cow.obj as y-up" in " ".join(err.split()) and not views_dir.exists()  # (log lines wrap)

    assert main(["render", str(cow), *small, "--normalize", "1", "--out", str(views_dir)]) == 0
    capsys.readouterr()
    assert json.loads((views_dir / "render.json").read_text())["up"] == "y"
    extents = trimesh.load(views_dir / "gt_mesh.ply", process=False).extents
    assert np.allclose(extents, np.array([10.444, 3.403, 6.397]) / 10.444, atol=1e-3)  # the cow's height on z
    assert main(["render", str(cow), *small, "--normalize", "1", "--out", str(views_dir)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err

    gt = views_dir / "gt_mesh.ply"  # z-up: render.json beside it marks it as img2mesh's
    assert main(["metrics", str(cow), str(gt)]) == 2
    err = capsys.readouterr().err
    assert "10.4 times the size of the ground truth" in err and "--normalize-pred" in err
    assert main(["metrics", str(cow), str(gt), "--normalize-pred", "--json"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert scores["fscore"] > 0.99 and (scores["pred_up"], scores["gt_up"]) == ("y", "z")
    assert "scoring PRED y-up, GT z-up" in " ".join(captured.err.split())
    # both axes given, one of them wrong: scored as given, and the reading that fits is pointed out
    assert main(["metrics", str(cow), str(gt), "--normalize-pred", "--pred-up", "z", "--gt-up", "z", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fscore"] < 0.5
    assert "but PRED y-up, GT z-up scores far better" in " ".join(captured.err.split())
