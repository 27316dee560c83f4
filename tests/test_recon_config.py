"""The recon settings are checked as a whole before any work: every key with a rule refuses a bad value with
one line naming the key and what it may be."""
import dataclasses

import pytest

from img2mesh.data.errors import InputError
from img2mesh.data.settings import rules
from img2mesh.recon.config import ReconConfig, check_recon_config
from img2mesh.recon.methods import METHODS


def replaced(cfg, key: str, value):
    """A copy of ``cfg`` with the dotted ``key`` (below recon.) set to ``value``."""
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replaced(getattr(cfg, head), rest, value)})


def bad_value(rule: dict):
    if "choices" in rule:
        return "bogus"
    if rule["low"] is not None:
        return rule["low"] - 1
    if rule["above"] is not None:
        return rule["above"]
    if rule["high"] is not None:
        return rule["high"] + 1
    if rule["below"] is not None:
        return rule["below"]
    return float("nan")


def test_the_defaults_pass():
    check_recon_config(ReconConfig())


@pytest.mark.parametrize("key, value, allowed", [
    ("method", "nerf", "neus, neus_mlp, voxel, hull"),
    ("loss.rgb", "l2", "soft_l1, mse"),
    ("neus.gradient", "sobel", "numerical, analytic"),
    ("optimizer", "sgd", "adam, adamw, adamax"),
    ("init.shape", "ball", "hull, blank"),
    ("neus.resolution", 1, ">= 4"),
    ("init.hull_tolerance", "maybe", "auto"),
])
def test_values_the_issue_found_late_are_refused_at_once(key, value, allowed):
    with pytest.raises(InputError, match=f"recon.{key}") as e:
        check_recon_config(replaced(ReconConfig(), key, value))
    assert allowed in str(e.value) and "\n" not in str(e.value)


def test_every_key_with_a_rule_refuses_a_bad_value():
    keys = rules(ReconConfig, "recon")
    assert {"recon.method", "recon.loss.rgb", "recon.neus.resolution", "recon.voxel.step_size",
            "recon.neus_mlp.encoding", "recon.occupancy.enabled", "recon.guard.every"} <= set(keys)
    for key, (_, rule) in keys.items():
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            check_recon_config(replaced(ReconConfig(), key[len("recon."):], bad_value(rule)))


def test_the_method_choice_is_the_methods():
    _, rule = rules(ReconConfig, "recon")["recon.method"]
    assert set(rule["choices"]) == set(METHODS)


@pytest.mark.parametrize("key, value, words", [
    ("neus.coarse_resolution", 200, "recon.neus.coarse_resolution=200"),
    ("voxel.coarse_resolution", 2, "recon.voxel.coarse_resolution=2"),
    ("neus_mlp.skip", [8], "recon.neus_mlp.skip"),
    ("loss.schedules", {"depth_smooth": [0.5]}, "recon.loss.schedules.depth_smooth"),
    ("loss.schedules", {"curvature": [0.0, 0.5]}, "not a loss of recon.method=voxel"),
    ("loss.lambda_near_view", 0.1, "recon.patches_per_batch is 0"),
    ("patches_per_batch", 64, "no room"),
])
def test_combinations_are_checked_too(key, value, words):
    cfg = replaced(ReconConfig(method="voxel"), key, value)
    with pytest.raises(InputError, match=words.replace(".", r"\.").replace("[", r"\[")):
        check_recon_config(cfg)
