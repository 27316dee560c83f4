"""`img2mesh run --model <SyncDreamer folder>` through all four stages with a tiny random SyncDreamer saved as a
converted folder; a noise file reproduces the same views twice and matches the Python entry point given the
same draws; several instances are scored and the best kept; settings SyncDreamer cannot run are refused
before any work."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from syncdreamer_tiny import tiny_syncdreamer, write_tiny_syncdreamer

from img2mesh.cli import main
from img2mesh.config import load_config
from img2mesh.data.views import read_views
from img2mesh.diffusion.config import DiffusionConfig
from img2mesh.diffusion.generators import check_settings, generator_of, load_model
from img2mesh.diffusion.syncdreamer.generate import sampler_settings, synthesize_syncdreamer
from img2mesh.diffusion.syncdreamer.sampler import to_uint8
from img2mesh.diffusion.syncdreamer.schedule import syncdreamer_timesteps

# 4 DDIM steps; a 40-step NeuS on 64 px views, a 64^3 mesh (test_app_e2e.py's fast recon and export)
FAST = ["diffusion.steps=4", "recon.steps=40", "recon.image_size=64", "recon.rays_per_batch=512",
        "recon.init.hull_resolution=48", "recon.checkpoint_every=20", "recon.neus.resolution=48",
        "recon.neus.color_resolution=24", "export.mesh.resolution=64", "export.turntable_frames=8",
        "export.target_faces=2000", "export.texture_size=256", "recon.init.hull_tolerance=0.75"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_syncdreamer(seed=0).save_pretrained(tmp_path_factory.mktemp("syncdreamer") / "tiny")


@pytest.fixture
def disc_masks(monkeypatch):
    """Random weights draw noise in which rembg finds no object: the generated views' masks are a centred disc
    instead (the same in every view, so the carved hull is a solid the reconstruction can fit)."""
    import img2mesh.data.background as background

    def disc(image, model_name="u2netp"):
        h, w = image.shape[:2]
        y, x = np.mgrid[:h, :w]
        return np.where((x - w / 2 + 0.5) ** 2 + (y - h / 2 + 0.5) ** 2 < (0.3 * w) ** 2, 255, 0).astype(np.uint8)

    monkeypatch.setattr(background, "remove_background", disc)


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def view_pixels(views_dir):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(views_dir.glob("r_*.png"))]


def test_run_goes_through_recon_and_export_with_the_views_at_syncdreamers_cameras(model_dir, tmp_path, shared,
                                                                                  disc_masks):
    out = tmp_path / "run"
    code, _, err = run_cli("run", "--scene", "pikachu", "--model", str(model_dir), "-c", "cpu", "--out", str(out),
                           "--quiet", *FAST)
    assert code == 0, err
    views = read_views(out / "views")
    input_camera = json.loads((out / "input" / "camera.json").read_text())
    assert len(views) == 16 and not any(v.is_input for v in views)
    for k, view in enumerate(views):
        cam = view.camera
        assert cam.elevation == pytest.approx(30.0) and cam.radius == pytest.approx(1.5)
        assert cam.azimuth == pytest.approx((input_camera["azimuth"] + 22.5 * k) % 360.0, abs=1e-6)
        assert cam.width == 64 and cam.focal == pytest.approx(280 * 64 / 256)  # the original's lens at 64 px
    meta = json.loads((out / "run.json").read_text())
    s = meta["syncdreamer"]
    assert s["steps"] == 4 and s["executed_steps"] == 4 and s["guidance_scale"] == 2.0 and s["eta"] == 1.0
    assert s["elevation"] == pytest.approx(input_camera["elevation"]) and s["kept"] == 0
    assert all((out / f"mesh.{fmt}").is_file() for fmt in ("obj", "glb", "ply"))
    assert meta["recon"]["steps"] == 40


def test_a_noise_file_reproduces_the_views_and_matches_the_python_entry_point(model_dir, tmp_path, shared):
    model = load_model(model_dir, dtype="fp32")  # what a run with explicit draws loads under dtype=auto
    h = model.config.latent_size
    g = torch.Generator().manual_seed(5)
    draws = {"x_T": torch.randn(16, 4, h, h, generator=g), "posterior_noise": torch.randn(1, 4, h, h, generator=g),
             "step_noise": torch.randn(len(syncdreamer_timesteps(4)) - 1, 16, 4, h, h, generator=g)}
    torch.save(draws, tmp_path / "noise.pt")
    runs = []
    for name, seed in (("a", 0), ("b", 7)):  # the seed no longer matters: every draw is given
        out = tmp_path / name
        code, _, err = run_cli("views", "--scene", "pikachu", "--model", str(model_dir), "-c", "cpu", "--out", str(out),
                               "--quiet", f"seed={seed}", f"diffusion.noise={tmp_path / 'noise.pt'}", *FAST)
        assert code == 0, err
        runs.append(out)
    settings = json.loads((runs[0] / "run.json").read_text())["syncdreamer"]
    assert settings["noise"] == str(tmp_path / "noise.pt") and len(settings["noise_sha256"]) == 64
    first, second = view_pixels(runs[0] / "views"), view_pixels(runs[1] / "views")
    assert all(np.array_equal(a, b) for a, b in zip(first, second))

    rgb = np.asarray(Image.open(runs[0] / "input" / "original.png").convert("RGB"))
    alpha = np.asarray(Image.open(runs[0] / "input" / "mask.png").convert("L"))
    elevation = json.loads((runs[0] / "input" / "camera.json").read_text())["elevation"]
    sample = synthesize_syncdreamer(model, rgb, alpha, elevation, DiffusionConfig(steps=4), noise=tmp_path / "noise.pt")
    expected = to_uint8(sample.images[0])  # [16, H, W, 3] as the original saves them
    assert all(np.array_equal(a, b) for a, b in zip(first, expected))
    assert sample.latents.shape == (1, 16, 4, h, h)


def test_several_instances_are_scored_and_the_most_consistent_kept(model_dir, tmp_path, shared, disc_masks):
    out = tmp_path / "run"
    code, _, err = run_cli("views", "--scene", "pikachu", "--model", str(model_dir), "-c", "cpu", "--out", str(out),
                           "--quiet", "diffusion.syncdreamer.sample_num=2", "diffusion.syncdreamer.keep_samples=true",
                           "recon.steps=10", *FAST[:1], *FAST[2:])
    assert code == 0, err
    s = json.loads((out / "run.json").read_text())["syncdreamer"]
    scores = [entry["score"] for entry in s["scores"]]
    assert len(scores) == 2 and s["kept"] == int(np.argmax(scores))
    assert set(s["scores"][0]["splits"]) == {"even -> odd", "odd -> even"}
    kept, other = view_pixels(out / "views_samples" / str(s["kept"])), view_pixels(out / "views_samples" / str(1 - s["kept"]))
    assert all(np.array_equal(a, b) for a, b in zip(view_pixels(out / "views"), kept))
    assert not all(np.array_equal(a, b) for a, b in zip(kept, other))  # each instance its own draws


def test_settings_it_cannot_run_are_refused_before_any_work(model_dir, tmp_path, shared):
    out = tmp_path / "run"
    code, _, err = run_cli("run", "--scene", "pikachu", "--model", str(model_dir), "--out", str(out), "-q",
                           "diffusion.steps=27")
    assert code == 2 and "use 26 or 28" in err and err.count("\n") == 1
    assert not (out / "views").exists()
    code, _, err = run_cli("run", "--scene", "pikachu", "--model", str(model_dir), "--out", str(out), "-q",
                           "diffusion.syncdreamer.sample_num=0")
    assert code == 2 and "sample_num=0: must be a number >= 1" in err
    code, _, err = run_cli("run", "--scene", "pikachu", "--model", str(model_dir), "--out", str(out), "-q",
                           "--clip", str(tmp_path / "missing.pt"))
    assert code != 0 and "missing.pt (--clip) does not exist" in err and err.count("\n") == 1
    assert not out.exists()


def test_unset_steps_and_guidance_take_the_generators_own(model_dir):
    assert generator_of(model_dir) == "syncdreamer" and generator_of("kxic/zero123-xl") == "zero123"
    s = sampler_settings(load_config("default").diffusion)
    assert (s.steps, s.guidance_scale, s.eta, s.batch_view_num) == (50, 2.0, 1.0, 8)
    s = sampler_settings(load_config("cpu", ["diffusion.guidance_scale=3.5"]).diffusion)  # the preset's and the user's
    assert (s.steps, s.guidance_scale) == (20, 3.5)
    note = check_settings(DiffusionConfig(model=str(model_dir), steps=30))
    assert note == ["diffusion.steps=30 runs 31 DDIM steps with SyncDreamer's sampler (a stride of 1000 // 30 = 33 "
                    "timesteps, as the original)"]


def test_input_elevations_outside_the_working_range_warn(caplog):
    from img2mesh.diffusion.syncdreamer.generate import warn_elevation

    for elevation, warns in ((-10.0, False), (40.0, False), (55.0, True), (-20.0, True)):
        caplog.clear()
        warn_elevation(elevation)
        assert ("outside [-10, 40]" in caplog.text) == warns, elevation


def test_the_cpu_time_warning_takes_zero123s_own_steps_when_unset(caplog):
    from img2mesh.runner import _warn_if_slow_on_cpu

    _warn_if_slow_on_cpu(load_config("default"), "cpu")
    assert "35 new views (a ring of 36 with the input) x 75 denoising steps" in caplog.text


def test_the_original_checkpoint_runs_with_its_clip_archive_given_by_flag(tmp_path, shared):
    _, ckpt, clip = write_tiny_syncdreamer(tmp_path / "release")
    elsewhere = tmp_path / "clip" / "ViT-L-14.pt"
    elsewhere.parent.mkdir()
    clip.rename(elsewhere)
    out = tmp_path / "run"
    code, _, err = run_cli("views", "--scene", "pikachu", "--model", str(ckpt), "--out", str(out), "-q", *FAST[:1])
    assert code == 2 and "give it with --clip" in err and not out.exists()  # refused before any work
    code, _, err = run_cli("views", "--scene", "pikachu", "--model", str(ckpt), "--clip", str(elsewhere),
                           "--out", str(out), "-q", *FAST[:1])
    assert code == 0, err
    assert len(read_views(out / "views")) == 16
