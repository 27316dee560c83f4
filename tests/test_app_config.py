"""Config presets, overrides and their errors."""
import dataclasses

import pytest

from img2mesh import load_config
from img2mesh.config import config_hash, preset_names
from img2mesh.data.errors import InputError


def test_presets_ship_with_the_package():
    assert {"default", "cpu", "reference"} <= set(preset_names())


def test_default_and_cpu():
    default, cpu = load_config("default"), load_config("cpu")
    assert default.diffusion.num_views == 36 and default.diffusion.guidance_scale == 3.0
    assert cpu.device == "cpu" and cpu.diffusion.num_views < default.diffusion.num_views


def test_the_reference_preset_is_the_reference_neus():
    """configs/reference.yaml undoes default.yaml's grid tuning on every key an MLP NeuS reads: its recon is the
    dataclass defaults (REFERENCE.md's values) except the grid-only and voxel-only settings."""
    from img2mesh.recon.config import ReconConfig

    grid_only = {"grid_resolution", "grid_coarse_resolution", "grid_upsample_at", "color_grid_resolution",
                 "grid_gradient", "grid_init", "grid_lr_scale"}
    reference, paper = load_config("reference").recon, ReconConfig()
    assert load_config("default").recon.neus.sdf == "grid" and reference.neus.sdf == "mlp"
    for key in {f.name for f in dataclasses.fields(ReconConfig)} - {"neus", "voxel", "loss"}:
        assert getattr(reference, key) == getattr(paper, key), key
    for key in {f.name for f in dataclasses.fields(type(paper.neus))} - grid_only:
        assert getattr(reference.neus, key) == getattr(paper.neus, key), key
    for key in {f.name for f in dataclasses.fields(type(paper.loss))} - {"lambda_curvature", "lambda_area",
                                                                           "lambda_density_laplacian"}:
        assert getattr(reference.loss, key) == getattr(paper.loss, key), key


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
    ("default", ["bogus=1"], "unknown config key 'bogus'"),
    ("default", ["recon.steps=abc"], "bad value for config key 'recon.steps'"),
    ("default", ["threads=-1"], "threads must be >= 0"),
    ("default", ["seed"], "must look like key=value"),
])
def test_errors_name_the_problem(name, overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(name, overrides)


def test_hash_changes_with_config():
    a, b = load_config("cpu"), load_config("cpu", ["diffusion.steps=3"])
    assert config_hash(a.diffusion) != config_hash(b.diffusion)
    assert config_hash(a.recon) == config_hash(b.recon)


def test_a_saved_config_is_the_base_and_a_preset_adds_only_its_own_keys(tmp_path):
    from img2mesh.config import to_yaml

    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(load_config("default", ["diffusion.model=/my/model", "recon.steps=40", "seed=3"])))
    resumed = load_config(None, ["threads=1"], base=saved)
    assert (resumed.diffusion.model, resumed.recon.steps, resumed.seed, resumed.threads) == ("/my/model", 40, 3, 1)
    on_top = load_config("cpu", [], base=saved)  # cpu.yaml's keys only: the model and recon.steps stay
    assert on_top.device == "cpu" and on_top.diffusion.num_views == 12
    assert (on_top.diffusion.model, on_top.recon.steps, on_top.seed) == ("/my/model", 40, 3)
    saved.write_text(saved.read_text().replace("seed: 3", "seed: x"))
    with pytest.raises(InputError, match=f"bad value for config key 'seed' in {saved}"):
        load_config(None, [], base=saved)
