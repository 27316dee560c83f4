"""`img2mesh batch`: inputs, run folder names, a batch with a corrupt image, its re-run, and the same batch on a
local Ray instance."""
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from img2mesh.batch import plan, read_inputs
from img2mesh.cli import main
from img2mesh.data.errors import InputError
from img2mesh.diffusion import build_random_zero123

from fast import FAST

# Two views, no grid or turntable, a small texture: a batch of several images stays quick.
BATCH = [*FAST, "diffusion.num_views=2", "export.turntable=false", "export.grid=false", "export.texture_size=64"]
RECORDS = ("run.json", "config.yaml", "summary.csv", "batch.json")  # rewritten by every invocation


@pytest.fixture(scope="module")
def images(shared, tmp_path_factory):
    """Two small RGBA photos (alpha: no background removal) and a corrupt file."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("pikachu", "minion"):
        with Image.open(shared / "scenes" / "nerf_wild" / name / "train" / "r_0.png") as im:
            im.resize((128, 128)).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"this is not a png")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_zero123("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("zero123") / "tiny")


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]


def test_inputs_from_a_folder_a_glob_and_a_list(images, tmp_path):
    folder = [p.name for p, _ in read_inputs(str(images))]
    assert folder == ["broken.png", "minion.png", "pikachu.png"]  # by name
    assert [p.name for p, _ in read_inputs(str(images / "p*.png"))] == ["pikachu.png"]
    listing = tmp_path / "list.csv"
    relative = Path(os.path.relpath(images / "pikachu.png", tmp_path))  # relative to the list's folder
    listing.write_text(f"image,elevation\n{images / 'minion.png'},15\n# a comment\n\n{relative},\n")
    assert [(p.name, e) for p, e in read_inputs(str(listing))] == [("minion.png", 15.0), ("pikachu.png", None)]
    (tmp_path / "bad.txt").write_text("a.png,high\n")
    with pytest.raises(InputError, match="line 1: elevation 'high' is not a number"):
        read_inputs(str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="no images match"):
        read_inputs(str(tmp_path / "*.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        read_inputs(str(tmp_path / "empty"))


def test_run_folders_are_unique_and_kept_by_their_image(tmp_path):
    a, b = tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.png"
    out = tmp_path / "out"
    assert [i.run for i in plan([(a, None), (b, 5.0)], out)] == ["cat", "cat-2"]
    (out / "cat").mkdir(parents=True)  # an earlier run of b took "cat": b keeps it, a gets another name
    (out / "cat" / "run.json").write_text(json.dumps({"source": {"image": str(b)}}))
    assert [(i.run, i.elevation) for i in plan([(a, None), (b, 5.0)], out)] == [("cat-2", None), ("cat", 5.0)]


@pytest.fixture(scope="module")
def local_batch(images, model_dir, tmp_path_factory):
    """The batch run here, once: (its folder, its command line, its first summary)."""
    tmp = tmp_path_factory.mktemp("local")
    shutil.copytree(model_dir, tmp / "model")  # a copy the re-run test may delete
    out = tmp / "batch"
    args = ["batch", str(images), "--out", str(out), "-c", "cpu", "--model", str(tmp / "model"), "--quiet", *BATCH]
    ray_before = "ray" in sys.modules
    code = main(args)
    assert ray_before or "ray" not in sys.modules  # no Ray without --ray
    return out, args, code, summary(out)


def test_batch_records_failures_and_goes_on(local_batch, capsys):
    out, _, code, rows = local_batch
    assert code == 2  # one bad image: the exit code of its error
    rows = {r["run"]: r for r in rows}
    assert rows["broken"]["status"] == "failed" and "not an image" in rows["broken"]["error"]
    for name in ("pikachu", "minion"):
        row = rows[name]
        assert row["status"] == "ok" and row["stages_run"] == "preprocess views recon export", row
        assert float(row["seconds_recon"]) > 0 and row["mesh_glb"] == f"{name}/mesh.glb"
        assert (out / row["mesh_glb"]).is_file() and (out / name / "mesh_albedo.png").is_file()


def test_the_same_batch_again_recomputes_nothing(local_batch, capsys):
    out, args, _, first = local_batch
    shutil.rmtree(args[args.index("--model") + 1])  # nothing to recompute: the model is not even loaded
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in RECORDS}
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 image(s) failed" in err and "broken" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in RECORDS} == before
    again = summary(out)
    assert without_times(again) == without_times([{**r, "stages_run": ""} for r in first])
    for row, before_row in zip(again, first):  # an ok row's total is its stages' recorded seconds, both times
        if row["status"] == "ok":
            stages = sum(float(v) for k, v in row.items() if k.startswith("seconds_") and v)
            assert float(row["seconds"]) == float(before_row["seconds"]) == pytest.approx(stages, abs=0.01)


def test_a_folder_that_is_not_a_batch_is_refused(images, capsys):
    assert main(["batch", str(images), "--out", str(images), *BATCH]) == 2
    assert "not a batch folder" in capsys.readouterr().err
    assert not (images / "summary.csv").exists()


def test_ray_batch_matches_the_local_one(images, model_dir, local_batch, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["batch", str(images), "--out", str(out), "--ray", "auto", "-c", "cpu", "--model", str(model_dir),
                     "--quiet", *BATCH])
    finally:
        ray.shutdown()
    capsys.readouterr()
    assert code == 2
    assert without_times(summary(out)) == without_times(local_batch[3])
    assert all((out / r["mesh_glb"]).is_file() for r in summary(out) if r["status"] == "ok")
