"""Run directories: the data stage end to end through the CLI and the API, resume, and bad input exit codes."""
import json
import subprocess
import sys

import pytest

import img2mesh
from img2mesh.cli import main
from img2mesh.data.errors import InputError


def cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_scenes_lists_shared_pikachu(capsys, shared):
    code, out, _ = cli(capsys, "scenes", "--quiet")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("pikachu"))
    assert "$IMG2MESH_SCENES" in line and "nerf_wild/pikachu" in line


def test_preprocess_then_resume_skips(tmp_path, shared):
    out = tmp_path / "run"
    first = img2mesh.run("pikachu", config="cpu", out=out, stop_after="preprocess", quiet=True)
    assert first.stages_run == ["preprocess"]
    for name in ("original.png", "mask.png", "preprocessed.png", "camera.json"):
        assert (out / "input" / name).is_file()
    meta = json.loads((out / "run.json").read_text())
    assert meta["source"]["label"] == "pikachu" and "torch" in meta["environment"]
    assert meta["environment"]["device"] == "cpu"  # the cpu preset's torch.device, recorded as its name
    assert meta["stages"]["preprocess"]["seconds"] >= 0
    again = img2mesh.run(resume=out, stop_after="preprocess", quiet=True)
    assert again.stages_skipped == ["preprocess"] and again.stages_run == []
    changed = img2mesh.run(resume=out, overrides=["data.foreground_ratio=0.5"], stop_after="preprocess", quiet=True)
    assert changed.stages_run == ["preprocess"]  # its config changed
    (out / "input" / "preprocessed.png").write_bytes(b"damaged")
    repaired = img2mesh.run(resume=out, overrides=["data.foreground_ratio=0.5"], stop_after="preprocess",
                            quiet=True)
    assert repaired.stages_run == ["preprocess"]  # a damaged output is recomputed


def test_image_input_uses_camera_flags(tmp_path, shared, capsys, broken_model):
    out = tmp_path / "img"
    code = main(["views", "--image", str(shared / "scenes/nerf_wild/alma/train/r_0.png"), "--elevation", "15",
                 "--out", str(out), "--quiet", f"diffusion.model={broken_model}"])
    err = capsys.readouterr().err
    camera = json.loads((out / "input" / "camera.json").read_text())
    assert camera["elevation"] == pytest.approx(15.0) and camera["w"] == 256
    assert code == 3 and "truncated or corrupt" in err  # the views stage cannot load the damaged model
    assert (out / "input" / "preprocessed.png").is_file()  # ... and the finished stage is kept
    meta = json.loads((out / "run.json").read_text())
    assert list(meta["stages"]) == ["preprocess"] and "broken_model" in (out / "config.yaml").read_text()


def test_in_memory_image(tmp_path):
    import numpy as np

    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 20:44] = (10, 200, 10, 255)
    result = img2mesh.run(rgba, out=tmp_path / "mem", stop_after="preprocess", quiet=True)
    assert (result.out / "input" / "original.png").is_file()


@pytest.mark.parametrize("args, code, message", [
    (["run", "--scene", "../etc"], 2, "invalid scene name"),
    (["run", "--scene", "nosuch"], 2, "scene 'nosuch' not found"),
    (["run", "--image", "/no/such.png"], 2, "does not exist"),
    (["run"], 2, "give --scene NAME or --image PATH"),
    (["run", "--scene", "pikachu", "--elevation", "10"], 2, "apply to --image inputs"),
    (["run", "--scene", "pikachu", "bogus.key=1"], 2, "unknown config key 'bogus'"),
    (["run", "--scene", "pikachu", "recon.steps=abc"], 2, "bad value for config key 'recon.steps'"),
    (["run", "--scene", "pikachu", "--model", "/no/such/model"], 2, "check the --model path"),
    (["run", "--scene", "pikachu", "--threads", "-2"], 2, "threads=-2: must be a number >= 0"),
    (["run", "--scene", "pikachu", "-c", "nosuch"], 2, "unknown config preset"),
    (["recon"], 2, "give --views DIR"),
    (["recon", "--views", "/no/such/dir"], 2, "does not exist"),
    (["export", "/no/such/run"], 2, "not an img2mesh run directory"),
])
def test_bad_input_is_one_line_with_exit_code(capsys, tmp_path, shared, args, code, message):
    got, _, err = cli(capsys, *args, *(["--out", str(tmp_path / "o")] if args[0] in ("run", "recon") else []))
    assert got == code
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing created for a refused run


def test_existing_run_is_never_overwritten(tmp_path, capsys, shared):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("earlier result")
    code, _, err = cli(capsys, "run", "--scene", "pikachu", "--out", str(out))
    assert code == 2 and "choose another --out" in err and "--resume" not in err  # not a run: nothing to resume
    assert (out / "precious.txt").read_text() == "earlier result"
    (out / "run.json").write_text("{}")
    code, _, err = cli(capsys, "run", "--scene", "pikachu", "--out", str(out))
    assert code == 2 and f"pass --resume {out} to continue that run" in err
    code, _, err = cli(capsys, "run", "--scene", "pikachu", "--out", str(out / "precious.txt"))
    assert code == 2 and "is a file, not a folder: choose another --out" in err and "--resume" not in err


def test_broken_image_through_the_console_script(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = subprocess.run([sys.executable, "-m", "img2mesh", "run", "--image", str(bad), "--out",
                           str(tmp_path / "o"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("img2mesh: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_resume_refuses_a_non_run(tmp_path):
    with pytest.raises(InputError, match="not an img2mesh run directory"):
        img2mesh.run(resume=tmp_path, quiet=True)


def _png(path, rgba):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.asarray(rgba, dtype=np.uint8)).save(path)
    return path


def _object(alpha: int):
    import numpy as np

    rgba = np.zeros((64, 64, 4), np.uint8)  # transparent background
    rgba[20:44, 20:44] = (200, 30, 30, alpha)
    return rgba


@pytest.mark.parametrize("case, code, message", [
    ("one_pixel", 2, "is 1x1 pixels, too small to show an object"),
    ("transparent", 2, "is fully transparent"),
    ("no_object", 2, "no foreground object found"),  # found by the preprocess stage itself
    ("incomplete_model", 3, "is not a complete Zero-1-to-3 folder"),
    ("uncached_hub_model", 3, "hf download kxic/zero123-xl"),
    ("out_under_a_file", 2, "is a file, not a folder"),
])
def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys, monkeypatch, shared, broken_model, case, code,
                                             message):
    """Everything checkable is checked before any work; a start that fails anyway removes what it wrote."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    image = {"one_pixel": lambda p: _png(p, [[[9, 9, 9, 255]]]),
             "transparent": lambda p: _png(p, _object(0)),
             "no_object": lambda p: _png(p, _object(100))}.get(case, lambda p: _png(p, _object(255)))(tmp_path / "in.png")
    out = tmp_path / "runs" / "new"
    args = ["views", "--image", str(image), "--out", str(out), "-q", "-c", "cpu"]
    if case == "incomplete_model":
        (tmp_path / "model" / "unet").mkdir(parents=True)
        args += ["--model", str(tmp_path / "model")]
    elif case != "uncached_hub_model":  # a model that passes the checks: the failure is the case's own
        args += ["--model", str(broken_model)]
    if case == "out_under_a_file":
        (tmp_path / "runs").write_text("a file")
        out = tmp_path / "runs" / "new"
        args[args.index("--out") + 1] = str(out)
    got, _, err = cli(capsys, *args)
    assert got == code and message in err and err.count("\n") == 1, err
    if case == "uncached_hub_model":
        assert "--model PATH" in err and "img2mesh convert" in err and "Retry" not in err
    assert not out.exists() and (case == "out_under_a_file" or not (tmp_path / "runs").exists())


def test_unreachable_hub_is_one_message_at_once(tmp_path, shared):
    """Online but without a network: one line at once, not the hub client's ~30 s of retry warnings."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "IMG2MESH_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # a closed port: refused at once, on any machine
    proc = subprocess.run([sys.executable, "-m", "img2mesh", "views", "--scene", "pikachu", "--out",
                           str(tmp_path / "o"), "device=cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Retry" not in proc.stderr
    assert "http://127.0.0.1:9 cannot be reached" in proc.stderr and "`hf download kxic/zero123-xl`" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, shared, capsys, umask, file_mode, dir_mode):
    """Files written atomically (a private temporary file renamed into place) get what open() would give."""
    import os
    import stat

    old = os.umask(umask)
    try:
        img2mesh.run("pikachu", config="cpu", out=tmp_path / "run", stop_after="preprocess", quiet=True)
        assert main(["render", str(shared / "meshes" / "suzanne.obj"), "--normalize", "1", "--layout", "ring4",
                     "--size", "32", "--out", str(tmp_path / "views"), "-q"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for root in (tmp_path / "run", tmp_path / "views"):
        paths = [root, *root.rglob("*")]
        assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()} == {file_mode}, root
        assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()} == {dir_mode}, root


def test_the_gpu_preset_on_a_cpu_warns_once_with_an_estimate(tmp_path, shared, capsys, broken_model):
    # The estimate follows the precision the views would run in (pinned here: auto depends on the CPU).
    code, _, err = cli(capsys, "views", "--scene", "pikachu", "--model", str(broken_model), "--out",
                       str(tmp_path / "gpu"), "device=cpu", "diffusion.dtype=fp32")
    flat = " ".join(err.split())  # (log lines wrap)
    assert code == 3 and flat.count("running on the CPU") == 1
    assert "35 new views (a ring of 36 with the input) x 75 denoising steps of Zero-1-to-3 XL take about 11 hours " \
           "here in fp32" in flat and "`-c cpu` makes 11 new views (a ring of 12) x 20 steps (about 0.9 hours)" in flat
    code, _, err = cli(capsys, "views", "--scene", "pikachu", "--model", str(broken_model), "--out",
                       str(tmp_path / "gpu-bf16"), "device=cpu", "diffusion.dtype=bf16")
    flat = " ".join(err.split())
    assert code == 3 and "take about 5 hours here in bf16" in flat and "(about 0.4 hours)" in flat
    code, _, err = cli(capsys, "views", "--scene", "pikachu", "--model", str(broken_model), "--out",
                       str(tmp_path / "cpu"), "-c", "cpu", "diffusion.dtype=fp32")
    assert code == 3 and "running on the CPU" not in err  # the CPU preset: under an hour, no warning
