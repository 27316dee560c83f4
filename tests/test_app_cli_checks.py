"""What the command line refuses or says before any work: flags out of range, --rerun without a run, a
missing background-removal model that cannot be fetched; and how it ends: a closed pipe, an interrupt."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from img2mesh import cli as cli_module
from img2mesh.cli import build_parser, main
from img2mesh.data import background


def cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("args, message", [
    (["run", "--image", "x.png", "--elevation", "500"], "--elevation=500: must be in [-90, 90] degrees"),
    (["views", "--image", "x.png", "--elevation", "nan"], "--elevation=nan: must be in [-90, 90] degrees"),
    (["run", "--image", "x.png", "--fov", "0"], "--fov=0: must be in (0, 180) degrees"),
    (["run", "--scene", "pikachu", "--threads", "-1"], "--threads=-1: must be a number >= 0 (0: torch's default)"),
    (["batch", "photos", "--out", "o", "--elevation", "-91"], "--elevation=-91: must be in [-90, 90] degrees"),
    (["render", "m.obj", "--out", "o", "--elevation", "95"], "--elevation=95: must be in [-90, 90] degrees"),
    (["render", "m.obj", "--out", "o", "--size", "4"], "--size=4: must be at least 16 pixels"),
    (["render", "m.obj", "--out", "o", "--radius", "0"], "--radius=0: must be positive"),
    (["render", "m.obj", "--out", "o", "--normalize", "-1"], "--normalize=-1: must be a positive size"),
    (["eval", "nvs", "--objects", "o", "--input-index", "-2"], "--input-index=-2: must be 0 or more"),
    (["serve", "--port", "70000"], "--port=70000: must be in [1, 65535]"),
    (["serve", "--concurrency", "0"], "--concurrency=0: must be at least 1"),
    (["serve", "--max-upload-mb", "0"], "--max-upload-mb=0: must be positive"),
    (["run", "--scene", "pikachu", "--rerun", "views"], "--rerun applies to an existing run: give it with --resume"),
])
def test_flags_out_of_range_are_refused_up_front(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # nothing may appear here: no run folder, no `o`
    code, out, err = cli(capsys, *args)
    assert code == 2 and err.startswith(f"img2mesh: error: {message}")
    assert err.count("\n") == 1 and out == "" and list(tmp_path.iterdir()) == []


def test_each_command_lists_only_the_flags_it_has():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    export, batch = sub["export"].format_help(), sub["batch"].format_help()
    assert "--resume" not in export and "--rerun" not in export
    assert "--resume" not in batch and "--rerun STAGE" in batch  # a batch resumes its run folders by itself
    assert "--resume RUN_DIR" in sub["run"].format_help()


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`img2mesh scenes | head`: the reader leaves first; no traceback, the exit status a shell expects."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "img2mesh", "scenes"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_an_interrupt_message_starts_on_its_own_line(capsys, monkeypatch):
    from img2mesh.data.progress import progress

    def interrupted(args):
        bar = iter(progress(range(10), desc="views"))  # left open, as an interrupt leaves a stage's bar
        next(bar), next(bar)
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.COMMANDS, "scenes", interrupted)
    code, _, err = cli(capsys, "scenes")
    before, _, after = err.rpartition("img2mesh: interrupted")
    assert code == 130 and after == "\n"
    assert before == "" or before.endswith(("\r", "\n"))  # the bar cleared its line first


@pytest.fixture
def no_rembg_model(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    return tmp_path / "u2net" / "models" / "u2netp" / "u2netp.onnx"


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("alpha", [True, False])
def test_a_missing_rembg_model_stops_the_run_before_a_folder_exists(tmp_path, capsys, monkeypatch, broken_model,
                                                                   no_rembg_model, online, alpha):
    """Offline, or online with rembg's download site unreachable: exit 3 at once, one line naming the one file
    rembg reads; with an alpha channel the generated views still need the model, so the check is the same."""
    if online:
        for name in ("HF_HUB_OFFLINE", "IMG2MESH_OFFLINE"):
            monkeypatch.setenv(name, "0")
        monkeypatch.setattr(background, "DOWNLOADS", "http://127.0.0.1:9")  # a closed port: refused at once
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (200, 40, 40, 255)
    image = tmp_path / "photo.png"
    Image.fromarray(rgba if alpha else rgba[..., :3]).save(image)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "views", "--image", str(image), "--model", str(broken_model), "--out", str(out),
                       "-q", "-c", "cpu")
    why = "http://127.0.0.1:9 cannot be reached" if online else "downloads are off (offline mode)"
    assert code == 3 and err.count("\n") == 1 and why in err, err
    assert "put u2netp.onnx (from http" in err and f"at {no_rembg_model}, or set U2NET_HOME" in err
    assert not out.exists() and "Traceback" not in err


def test_the_model_folder_is_the_one_rembg_reads(tmp_path, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REMBG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert background.model_files("u2netp") == [tmp_path / ".rembg/models/u2netp/u2netp.onnx",
                                                tmp_path / ".u2net/u2netp.onnx"]
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert background.model_files("u2netp") == [tmp_path / "xdg/rembg/models/u2netp/u2netp.onnx",
                                                tmp_path / "xdg/.u2net/u2netp.onnx"]
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "mine"))
    assert background.model_files("u2netp") == [tmp_path / "mine/models/u2netp/u2netp.onnx",
                                                tmp_path / "mine/u2netp.onnx"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "u2netp.onnx").write_bytes(b"x")
    background.check_model("u2netp")  # found: no download needed, nothing to refuse


def test_the_one_time_rembg_message_only_before_the_first_compilation(tmp_path, monkeypatch):
    package = tmp_path / "pkgs" / "pymatting"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.delitem(sys.modules, "pymatting", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert not background._compiled_before()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "util.f-1.py311.nbi").write_bytes(b"")
    assert background._compiled_before()


def test_the_readme_says_what_the_command_line_says():
    """README and --help describe --normalize-pred alike, and count the presets' views as the run's warning does
    (the ring's views, the input among them, and the new ones)."""
    from pathlib import Path

    from img2mesh.config import load_config

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert cli_module.NORMALIZE_PRED_HELP.removeprefix("map ") in readme
    for preset in ("default", "cpu"):
        views = load_config(preset).diffusion.num_views
        assert f"{views} views (the input and {views - 1} new ones)" in readme, preset
