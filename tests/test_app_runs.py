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


def test_image_input_uses_camera_flags(tmp_path, shared, capsys):
    out = tmp_path / "img"
    code = main(["views", "--image", str(shared / "scenes/nerf_wild/alma/train/r_0.png"), "--elevation", "15",
                 "--out", str(out), "--quiet", "diffusion.model=/nonexistent/model"])
    capsys.readouterr()
    camera = json.loads((out / "input" / "camera.json").read_text())
    assert camera["elevation"] == pytest.approx(15.0) and camera["w"] == 256
    assert code != 0  # the views stage cannot load a model that does not exist
    assert (out / "input" / "preprocessed.png").is_file()  # ... and the finished stage is kept


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
    (["run", "--scene", "pikachu", "bogus.key=1"], 2, "bad config key"),
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
    assert code == 2 and "--resume" in err
    assert (out / "precious.txt").read_text() == "earlier result"


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
