"""`img2mesh metrics` decides how to read the two files from evidence: a copy of a run's mesh scores perfect
whatever the files' conventions say, and a reconstruction from `render --normalize` views is scored in that
render's frame when GT is the render's source mesh."""
import json
import shutil

import pytest

from img2mesh.cli import main


@pytest.fixture(scope="module")
def rendered_run(shared, tmp_path_factory):
    """A render folder of suzanne (normalised) and a run folder made from it whose mesh is the mesh as rendered
    (a perfect reconstruction): the layout `img2mesh render` and `img2mesh recon --views` leave."""
    root = tmp_path_factory.mktemp("readings")
    views = root / "views"
    assert main(["render", str(shared / "meshes" / "suzanne.obj"), "--normalize", "1", "--layout", "ring4",
                 "--size", "32", "--out", str(views), "-q"]) == 0
    run = root / "run"
    run.mkdir()
    shutil.copy(views / "gt_mesh.ply", run / "mesh.ply")
    (run / "run.json").write_text(json.dumps({"source": {"views": str(views.resolve())}}))
    return shared / "meshes" / "suzanne.obj", views, run


def metrics(capsys, *args):
    code = main(["metrics", *map(str, args), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), " ".join(captured.err.split())


def test_a_copy_of_a_runs_mesh_scores_perfect(rendered_run, tmp_path, capsys):
    _, _, run = rendered_run
    copy = shutil.copy(run / "mesh.ply", tmp_path / "copy.ply")  # no run.json beside it: y-up by convention
    scores, err = metrics(capsys, run / "mesh.ply", copy)
    assert scores["chamfer"] < 1e-9 and scores["fscore"] == 1.0 and scores["iou"] == 1.0
    assert scores["pred_up"] == scores["gt_up"]  # one relative reading, whichever axis the files use
    assert "scores far better" in err and "using it" in err


def test_the_source_mesh_of_a_render_is_scored_in_the_renders_frame(rendered_run, capsys):
    source, views, run = rendered_run
    scores, err = metrics(capsys, run / "mesh.ply", source)
    assert scores["gt_frame"] == str(views.resolve() / "render.json") and scores["gt_up"] == "y"
    assert scores["chamfer"] < 1e-3 and scores["fscore"] > 0.99
    assert f"next time compare against {views.resolve() / 'gt_mesh.ply'}" in err
    direct, _ = metrics(capsys, run / "mesh.ply", views / "gt_mesh.ply")  # what README says to do
    assert direct["chamfer"] < 1e-9 and direct["gt_frame"] is None


def test_axes_given_are_kept_and_a_better_reading_is_pointed_out(rendered_run, tmp_path, capsys):
    _, views, run = rendered_run
    scores, err = metrics(capsys, run / "mesh.ply", views / "gt_mesh.ply", "--pred-up", "y", "--gt-up", "z")
    assert (scores["pred_up"], scores["gt_up"]) == ("y", "z") and scores["chamfer"] > 0.01
    assert "scoring PRED y-up, GT z-up as given, but PRED z-up, GT z-up scores far better" in err
