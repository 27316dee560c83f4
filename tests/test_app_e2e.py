"""`img2mesh run` through all four stages on the pikachu scene with a tiny random Zero-1-to-3 saved in
diffusers format, then `--resume` on the same run recomputes nothing, and `img2mesh export` with other asset
settings reruns the export stage alone."""
import json

import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh
from omegaconf import OmegaConf

import img2mesh

from img2mesh.cli import main
from img2mesh.data.views import read_views
from img2mesh.diffusion import build_random_zero123

# The CPU preset cut to a few steps: 4 views x 3 DDIM steps, a 40-step NeuS on 64 px views, a 64^3 mesh
# decimated to 2000 faces with a 256 px texture.
FAST = ["diffusion.num_views=4", "diffusion.steps=3", "recon.steps=40", "recon.image_size=64",
        "recon.rays_per_batch=512", "recon.init.hull_resolution=48", "recon.checkpoint_every=20",
        "recon.neus.resolution=48", "recon.neus.color_resolution=24", "export.mesh.resolution=64",
        "export.turntable_frames=8", "export.target_faces=2000", "export.texture_size=256",
        "recon.init.hull_tolerance=0.75"]  # random weights: the generated views agree on nothing


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_zero123("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("zero123") / "tiny")


def test_run_writes_every_artifact_and_resume_recomputes_nothing(model_dir, tmp_path, shared, capsys):
    out = tmp_path / "run"
    code = main(["run", "--scene", "pikachu", "--model", str(model_dir), "--config", "cpu", "--out", str(out),
                 "--quiet", *FAST])
    _, err = capsys.readouterr()
    assert code == 0, err

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
    # z-up files; the GLB is y-up (x, y, z) -> (x, z, -y), same size.
    assert np.allclose(glb.extents, ply.extents[[0, 2, 1]], atol=1e-4)

    grid = imageio.imread(out / "views_grid.png")
    assert grid.ndim == 3 and grid.shape[0] > 0
    frames = imageio.mimread(out / "turntable.mp4")
    assert len(frames) == 8 and frames[0].mean() < 254  # the mesh is in frame

    meta = json.loads((out / "run.json").read_text())
    for stage in ("preprocess", "views", "recon", "export"):
        assert meta["stages"][stage]["seconds"] >= 0, stage
    assert OmegaConf.create(meta["config"]).recon.steps == 40 and meta["environment"]["torch"]
    assert set(meta["timings"]) >= {"preprocess", "views", "recon", "export"}
    assert (out / "recon" / "field.pt").is_file() and not (out / "recon" / "checkpoint.pt").exists()

    records = ("run.json", "config.yaml")  # rewritten by every invocation; stage outputs must not be
    config = (out / "config.yaml").read_text()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in records}
    code = main(["run", "--resume", str(out), "--quiet"])
    capsys.readouterr()
    assert code == 0
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in records}
    assert after == before and (out / "config.yaml").read_text() == config  # nothing recomputed
    again = img2mesh.run(resume=out, quiet=True)
    assert again.stages_run == [] and again.stages_skipped == ["preprocess", "views", "recon", "export"]

    # Other asset settings: `img2mesh export` runs the export stage alone, on the trained field.
    field_time = (out / "recon" / "field.pt").stat().st_mtime_ns
    code = main(["export", str(out), "--quiet", "export.target_faces=500", "export.texture_size=128"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(printed)["run"] == ["export"] and (out / "recon" / "field.pt").stat().st_mtime_ns == field_time
    glb = trimesh.load(out / "mesh.glb", force="mesh", process=False)
    assert abs(len(glb.faces) - 500) <= 25 and glb.visual.material.baseColorTexture.size == (128, 128)
