"""`img2mesh run` through all four stages on the pikachu scene with a tiny random Zero-1-to-3 saved in
diffusers format; then what `--resume` does with that run: nothing recomputed, new flags on top of the saved
config, a changed setting that would redo views or recon refused without `--rerun`, nothing saved by a
failed stage, an interrupted recon continued with its time added up; `img2mesh export` with other asset
settings reruns the export stage alone."""
import contextlib
import io
import json
import shutil

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import trimesh
from omegaconf import OmegaConf

import img2mesh

from img2mesh.cli import main
from img2mesh.data.progress import listen
from img2mesh.data.views import read_views
from img2mesh.diffusion import build_random_zero123

from fast import FAST

# What the assertions below check: 4 views x 3 DDIM steps, a 40-step NeuS on 64 px views with checkpoints, a
# 64^3 mesh decimated to 2000 faces with a 256 px texture, an 8-frame turntable.
FINISHED = [*FAST, "diffusion.steps=3", "recon.steps=40", "recon.image_size=64", "recon.rays_per_batch=512",
            "recon.init.hull_resolution=48", "recon.checkpoint_every=20", "recon.neus.resolution=48",
            "recon.neus.color_resolution=24", "export.mesh.resolution=64", "export.turntable_frames=8",
            "export.target_faces=2000", "export.texture_size=256"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_zero123("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("zero123") / "tiny")


@pytest.fixture(scope="module")
def finished(model_dir, tmp_path_factory, shared):
    """One full run, made once: (run folder, what the command printed)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["run", "--scene", "pikachu", "--model", str(model_dir), "--config", "cpu", "--out", str(out),
                     "--quiet", *FINISHED])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue()


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run that a test may change."""
    return shutil.copytree(finished[0], tmp_path / "run")


def cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_and_times(run):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}


def test_run_writes_every_artifact_and_resume_recomputes_nothing(finished, capsys):
    out, stdout = finished
    assert f"mesh: {out / 'mesh.glb'} (also mesh.obj, mesh.ply)" in stdout  # a summary for people, not JSON
    assert f"run folder: {out} (ran preprocess" in stdout

    views = read_views(out / "views")
    assert len(views) == 4 and views[0].is_input
    assert (out / "views" / "transforms.json").is_file()
    assert all(v.rgba.shape == (256, 256, 4) for v in views)
    input_azimuth = views[0].camera.azimuth  # the scene's frame 0; the ring follows it
    assert [round(v.camera.azimuth - input_azimuth) % 360 for v in views[1:]] == [90, 180, 270]

    obj, ply = trimesh.load(out / "mesh.obj", process=False), trimesh.load(out / "mesh.ply", process=False)
    glb = trimesh.load(out / "mesh.glb", force="mesh", process=False)
    assert 1900 <= len(obj.faces) == len(glb.faces) == len(ply.faces) <= 2100
    assert len(glb.vertices) == len(obj.vertices) >= len(ply.vertices)  # textured: vertices split at UV seams
    assert glb.visual.material.baseColorTexture.size == (256, 256) and (out / "mesh_albedo.png").is_file()
    assert ply.visual.vertex_colors.shape == (len(ply.vertices), 4)
    # the PLY is z-up; the GLB and OBJ are y-up (x, y, z) -> (x, z, -y), same size.
    assert np.allclose(glb.extents, ply.extents[[0, 2, 1]], atol=1e-4)
    assert np.allclose(obj.extents, glb.extents, atol=1e-4)

    grid = imageio.imread(out / "views_grid.png")
    assert grid.ndim == 3 and grid.shape[0] > 0
    assert grid[:12, :60].min() < 80  # the first tile's label ("input az 90 el ...") in its white corner
    frames = imageio.mimread(out / "turntable.mp4")
    assert len(frames) == 8 and frames[0].mean() < 254  # the mesh is in frame

    meta = json.loads((out / "run.json").read_text())
    for stage in ("preprocess", "views", "recon", "export"):
        assert meta["stages"][stage]["seconds"] >= 0, stage
    assert meta["stages"]["views"]["settings"]["data.rembg_model"] == "u2netp"
    assert OmegaConf.create(meta["config"]).recon.steps == 40 and meta["environment"]["torch"]
    assert set(meta["timings"]) >= {"preprocess", "views", "recon", "export"}
    assert meta["recon"]["method"] == "neus" and meta["recon"]["inv_s"] > 0 and meta["recon"]["rollbacks"] == 0
    assert meta["views"]["requested"] == "auto" and meta["views"]["dtype"] in ("fp32", "bf16") and meta["views"]["why"]
    assert (out / "recon" / "field.pt").is_file() and not (out / "recon" / "checkpoint.pt").exists()

    before = files_and_times(out)
    code, stdout, _ = cli(capsys, "run", "--resume", str(out), "--quiet", "--json")
    assert code == 0 and json.loads(stdout)["run"] == []
    assert files_and_times(out) == before  # nothing recomputed, nothing rewritten
    events = []
    again = img2mesh.run(resume=out, quiet=True, on_stage=events.append)
    assert again.stages_run == [] and again.stages_skipped == ["preprocess", "views", "recon", "export"]
    assert [(e.stage, e.finished, e.skipped) for e in events] == [
        (stage, finished, finished) for stage in again.stages_skipped for finished in (False, True)]
    assert [e.seconds for e in events[1::2]] == [meta["stages"][s]["seconds"] for s in again.stages_skipped]
    assert len(events[3].output) == 4 and events[5].output == out / "recon" / "field.pt"


def test_export_with_other_asset_settings_reruns_the_export_alone(run_copy, capsys):
    field = (run_copy / "recon" / "field.pt").stat().st_mtime_ns
    code, stdout, err = cli(capsys, "export", str(run_copy), "-q", "--json", "export.target_faces=500",
                            "export.texture_size=128")
    assert code == 0, err
    assert json.loads(stdout)["run"] == ["export"] and (run_copy / "recon" / "field.pt").stat().st_mtime_ns == field
    glb = trimesh.load(run_copy / "mesh.glb", force="mesh", process=False)
    assert abs(len(glb.faces) - 500) <= 25 and glb.visual.material.baseColorTexture.size == (128, 128)


def test_a_preset_on_resume_goes_on_top_and_needs_rerun_to_redo_views(run_copy, capsys, model_dir):
    before = files_and_times(run_copy)
    code, _, err = cli(capsys, "run", "--resume", str(run_copy), "-c", "cpu", "-q")
    # cpu.yaml's own keys on top of the saved config: 4 -> 12 views would regenerate them
    assert code == 2 and err.count("\n") == 1
    assert "the finished views stage would be regenerated" in err and "diffusion.num_views 4 -> 12" in err
    assert "--rerun views" in err
    assert files_and_times(run_copy) == before  # refused before anything: the saved config is as it was
    code, stdout, _ = cli(capsys, "run", "--resume", str(run_copy), "-q", "--json")
    assert code == 0 and json.loads(stdout)["run"] == []  # a plain resume still regenerates nothing
    code, _, err = cli(capsys, "run", "--resume", str(run_copy), "-q", "--threads", "2", "device=cpu")
    assert code == 0 and torch.get_num_threads() == 2  # settings no stage depends on: nothing reruns


def test_a_changed_recon_setting_reruns_recon_only_when_asked(run_copy, capsys, model_dir):
    code, _, err = cli(capsys, "run", "--resume", str(run_copy), "-q", "recon.steps=20")
    assert code == 2 and "the finished recon stage would be rerun" in err and "recon.steps 40 -> 20" in err
    code, stdout, _ = cli(capsys, "run", "--resume", str(run_copy), "-q", "--json", "--rerun", "recon",
                          "recon.steps=20")
    assert code == 0 and json.loads(stdout)["run"] == ["recon", "export"]
    saved = OmegaConf.load(run_copy / "config.yaml")  # the run's earlier flags kept, the new one on top
    assert saved.recon.steps == 20 and saved.diffusion.num_views == 4 and saved.diffusion.model == str(model_dir)
    assert saved.recon.image_size == 64


def test_the_rembg_model_is_part_of_the_views(run_copy, capsys, shared, tmp_path, monkeypatch):
    home = tmp_path / "u2net"  # a second model file: silueta has u2netp's inputs and outputs
    home.mkdir()
    for name in ("u2netp", "silueta"):
        shutil.copy(shared / "models" / "u2netp.onnx", home / f"{name}.onnx")
    monkeypatch.setenv("U2NET_HOME", str(home))
    code, _, err = cli(capsys, "views", "--resume", str(run_copy), "-q", "data.rembg_model=silueta")
    assert code == 2 and "the finished views stage would be regenerated" in err
    assert "data.rembg_model u2netp -> silueta" in err
    code, stdout, _ = cli(capsys, "views", "--resume", str(run_copy), "-q", "--json", "--rerun", "views",
                          "data.rembg_model=silueta")
    assert code == 0 and json.loads(stdout)["run"] == ["preprocess", "views"]
    meta = json.loads((run_copy / "run.json").read_text())
    assert meta["stages"]["views"]["settings"]["data.rembg_model"] == "silueta"


def test_a_failed_stage_saves_nothing(run_copy, capsys, broken_model):
    config, views = (run_copy / "config.yaml").read_bytes(), files_and_times(run_copy / "views")
    code, _, err = cli(capsys, "views", "--resume", str(run_copy), "-q", "--rerun", "views", "--model",
                       str(broken_model))
    assert code == 3 and "truncated or corrupt" in err
    assert (run_copy / "config.yaml").read_bytes() == config and files_and_times(run_copy / "views") == views
    code, stdout, _ = cli(capsys, "run", "--resume", str(run_copy), "-q", "--json")
    assert code == 0 and json.loads(stdout)["run"] == []  # the next plain resume regenerates nothing


def test_an_interrupted_recon_continues_and_counts_all_its_time(run_copy, capsys):
    """Ctrl+C at step 50 of 60, right after the step-50 checkpoint: the progress listener raises it there, as the
    terminal's SIGINT would, so the moment does not depend on how fast the machine is."""
    # The guard's checks (random views agree on nothing) are not what this test is about.
    flags = ["--rerun", "recon", "recon.steps=60", "recon.checkpoint_every=50", "recon.guard.enabled=false"]
    checkpoint = run_copy / "recon" / "checkpoint.pt"

    def ctrl_c_after_the_checkpoint(label, n, total):
        if label.startswith("recon") and n == 50:
            assert checkpoint.is_file()
            raise KeyboardInterrupt

    with listen(ctrl_c_after_the_checkpoint):
        code, _, err = cli(capsys, "run", "--resume", str(run_copy), "-q", *flags)
    assert code == 130, err
    assert f"finished stages are kept in {run_copy}" in err
    assert f"`img2mesh run --resume {run_copy} -q {' '.join(flags)}`" in err
    partial = json.loads((run_copy / "run.json").read_text())["partial"]["recon"]["seconds"]

    steps = []
    with listen(lambda label, n, total: steps.append(n) if label.startswith("recon") else None):
        code, stdout, _ = cli(capsys, "run", "--resume", str(run_copy), "-q", "--json", *flags)
    assert code == 0 and json.loads(stdout)["run"] == ["recon", "export"]
    assert steps[0] == 50 and steps[-1] == 60  # it went on from the checkpoint (a new start reports 0 first)
    meta = json.loads((run_copy / "run.json").read_text())
    assert "partial" not in meta or "recon" not in meta["partial"]
    assert meta["stages"]["recon"]["seconds"] > partial  # both parts, not only the last 10 steps
