"""Config presets, overrides and their errors; every key with a rule refused by every command before any work."""
import contextlib
import dataclasses
import io

import pytest
from PIL import Image

from img2mesh import load_config
from img2mesh.cli import main
from img2mesh.config import Config, config_hash, preset_names
from img2mesh.data.errors import InputError
from img2mesh.data.settings import allowed, rules


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
    ("default", ["threads=-1"], r"threads=-1: must be a number >= 0"),
    ("default", ["seed"], "must look like key=value"),
    ("default", ["export.origin=top"], "export.origin='top': choose one of center, bottom, world"),
    ("default", ["export.texture_size=0"], "export.texture_size=0: must be a number from 16 to 8192"),
    ("default", ["export.scale=-1"], "export.scale=-1.0: must be a number > 0"),
    ("default", ["export.target_faces=2"], "export.target_faces=2: use 0 .keep the full mesh. or at least 4"),
    ("default", ["export.formats=[obj,fbx]"], "export.formats item 'fbx': choose one of obj, glb, ply"),
    ("default", ["device=gpu"], "device='gpu': choose auto, cpu, cuda, cuda:N or mps"),
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


def bad_value(field, rule) -> str:
    """A value just outside what ``rule`` allows, as a command-line override value."""
    if "choices" in rule:
        bad = "bogus"
    elif rule["low"] is not None:
        bad = rule["low"] - 1
    elif rule["above"] is not None:
        bad = rule["above"]
    elif rule["high"] is not None:
        bad = rule["high"] + 1
    elif rule["below"] is not None:
        bad = rule["below"]
    else:  # any finite number or a word of `also`
        bad = "bogus"
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    integer = (isinstance(default, int) and not isinstance(default, bool)
               or default is None and "int" in str(field.type) and "float" not in str(field.type))  # Optional[int]
    if not isinstance(bad, str) and not integer:
        bad = float(bad)  # a float key (or a number-or-word one) takes a float
    return f"[{bad}]" if isinstance(default, list) else str(bad)


RULED = dict(sorted(rules(Config).items()))
COMMANDS = ["run", "views", "recon", "batch", "serve"]


# Keys without a rule: any value of their type works (an azimuth, an initial value), or what it names is checked
# where it is found (a model, a rembg model), or its section's check looks at it as a whole (the MLP's skip
# layers, the loss schedules). A new key gets a rule or a place here.
UNRULED = {"data.rembg_model", "data.azimuth", "diffusion.model", "diffusion.noise", "diffusion.syncdreamer.clip",
           "recon.neus.variance_init", "recon.neus_mlp.variance_init", "recon.neus_mlp.skip",
           "recon.voxel.density_shift", "recon.voxel.density_scale_init", "recon.loss.schedules"}


def test_every_key_has_a_rule_or_is_named_unruled():
    from img2mesh.config import flatten

    keys = {key for key, value in flatten(Config()).items() if not isinstance(value, bool)}
    keys = {"recon.loss.schedules" if key.startswith("recon.loss.schedules.") else key for key in keys}
    assert keys - set(RULED) == UNRULED
    assert {key.split(".")[0] for key in RULED if "." in key} >= {"data", "diffusion", "recon", "export", "batch"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An image and a views folder that the commands would accept."""
    folder = tmp_path_factory.mktemp("inputs")
    Image.new("RGBA", (64, 64), (200, 50, 50, 255)).save(folder / "photo.png")
    return folder


def test_a_bad_value_of_any_key_stops_every_command_before_any_work(inputs, tmp_path):
    """Each key with a rule (taken from the config classes, so a new key is covered) gets a value just outside it;
    the keys take turns over the commands. Each must exit 2 with one line naming the key and what it may be,
    before a run folder exists (nothing was preprocessed)."""
    assert len(RULED) > 20
    for i, key in enumerate(RULED):
        command = COMMANDS[i % len(COMMANDS)]
        out = tmp_path / f"out{i}"
        args = {"run": ["run", "--image", str(inputs / "photo.png"), "--out", str(out)],
                "views": ["views", "--image", str(inputs / "photo.png"), "--out", str(out)],
                "recon": ["recon", "--views", str(inputs / "no-views-needed"), "--out", str(out)],
                "batch": ["batch", str(inputs), "--out", str(out)],
                "serve": ["serve", "--out", str(out), "--port", "1"]}[command]
        field, rule = RULED[key]
        override = f"{key}={bad_value(field, rule)}"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = main([*args, "--quiet", override])
        lines = stderr.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1, (command, override, stderr.getvalue())
        assert key in lines[0] and allowed(rule) in lines[0], (command, override, lines[0])
        assert not out.exists(), (command, override)
