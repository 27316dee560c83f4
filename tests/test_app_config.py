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
    assert default.diffusion.num_views == 36 and default.diffusion.guidance_scale is None  # the generator's own
    assert cpu.device == "cpu" and cpu.diffusion.num_views < default.diffusion.num_views


def test_the_reference_preset_is_the_reference_neus():
    """-c reference runs the MLP NeuS with the reference's sizes and training settings (docs/reference.md
    section 4): its network is recon.neus_mlp's defaults; the preset holds the training settings."""
    r = load_config("reference").recon
    m = r.neus_mlp
    assert r.method == "neus_mlp" and r.steps == 2000 and r.optimizer == "adamw" and m.lr == 5e-4
    assert (m.layers, m.hidden, m.skip, m.n_frequencies, m.color_layers, m.color_hidden) == (8, 256, [4], 6, 4, 256)
    assert (m.n_samples, m.n_importance, m.up_sample_steps, m.cos_anneal_steps) == (64, 64, 4, 200)
    assert m.variance_init == 0.3 and m.view_dependent and m.lambda_eikonal == 0.1 and r.loss.lambda_rgb == 0.5
    assert (r.warmup_steps, r.lr_final_ratio, r.foreground_fraction) == (100, 0.02, 0.125)


def test_dataclass_defaults_are_the_product_defaults_and_presets_hold_only_differences():
    from omegaconf import OmegaConf

    from img2mesh.config import Config, _preset_path, flatten

    assert load_config("default") == Config()
    defaults = OmegaConf.structured(Config)
    for name in ("cpu", "reference"):
        layer = OmegaConf.load(_preset_path(name))
        for key in flatten(OmegaConf.to_container(layer)):
            assert OmegaConf.select(layer, key) != OmegaConf.select(defaults, key), f"{name}.yaml restates {key}"


@pytest.mark.parametrize("override, new", [("recon.lr=0.1", "recon.neus.lr"),
                                           ("recon.mesh.resolution=64", "export.mesh.resolution"),
                                           ("recon.neus.grid_resolution=64", "recon.neus.resolution"),
                                           ("recon.hull_tolerance=0.1", "recon.init.hull_tolerance"),
                                           ("recon.loss.lambda_curvature=0", "recon.neus.lambda_curvature"),
                                           ("recon.neus.encoding=hashgrid", "recon.neus_mlp.encoding"),
                                           ("export.mesh.target_faces=5000", "export.target_faces")])
def test_old_keys_are_refused_with_the_new_key(override, new):
    with pytest.raises(InputError, match=f"has moved: use {new}"):
        load_config("cpu", [override])


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
    ("default", ["export.origin=top"], "export.origin='top': choose one of center, bottom, world"),
    ("default", ["export.texture_size=0"], "export.texture_size=0: choose 16 to 8192"),
    ("default", ["export.scale=-1"], "export.scale=-1.0: must be a positive number"),
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
