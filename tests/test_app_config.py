"""Config presets, overrides and their errors."""
import pytest

from img2mesh import load_config
from img2mesh.config import config_hash, preset_names
from img2mesh.data.errors import InputError


def test_presets_ship_with_the_package():
    assert {"default", "cpu"} <= set(preset_names())


def test_default_and_cpu():
    default, cpu = load_config("default"), load_config("cpu")
    assert default.diffusion.num_views == 36 and default.diffusion.guidance_scale == 3.0
    assert cpu.device == "cpu" and cpu.diffusion.num_views < default.diffusion.num_views


def test_overrides_apply_last():
    cfg = load_config("cpu", ["seed=7", "diffusion.steps=3", "diffusion.elevations=[0,30]"])
    assert cfg.seed == 7 and cfg.diffusion.steps == 3 and cfg.diffusion.elevations == [0, 30]


def test_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 5\ndiffusion:\n  mode: independent\n")
    cfg = load_config(str(path))
    assert cfg.seed == 5 and cfg.diffusion.mode == "independent"
    assert cfg.diffusion.num_views == 36  # the rest comes from default.yaml


@pytest.mark.parametrize("name, overrides, message", [
    ("nosuch", [], "unknown config preset 'nosuch'"),
    ("/no/such.yaml", [], "does not exist"),
    ("default", ["bogus=1"], "bad config key 'bogus'"),
    ("default", ["seed=abc"], "bad config key 'seed'"),
    ("default", ["seed"], "must look like key=value"),
])
def test_errors_name_the_problem(name, overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(name, overrides)


def test_hash_changes_with_config():
    a, b = load_config("cpu"), load_config("cpu", ["diffusion.steps=3"])
    assert config_hash(a.diffusion) != config_hash(b.diffusion)
    assert config_hash(a.recon) == config_hash(b.recon)
