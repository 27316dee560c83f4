"""The recon stage end to end on small renders: NeuS quality bound, resume equality, methods, bad views."""
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from img2mesh import load_config
from img2mesh.data.cameras import ring_cameras
from img2mesh.data.errors import InputError
from img2mesh.data.views import View, Views
from img2mesh.recon import MeshConfig
from img2mesh.recon.config import (InitConfig, LossConfig, NeuSConfig, OccupancyConfig, ReconConfig, VoxelConfig,
                                   check_recon_config, method_sections, recon_config_class, stage_settings)
from img2mesh.recon.fields.box import FieldBox
from img2mesh.recon.fields.voxel import VoxelNeRF
from img2mesh.recon.methods import METHODS
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh
from img2mesh.recon.mesh.raycast import render_views
from img2mesh.recon.mesh.metrics import mesh_metrics
from img2mesh.recon.field_file import load_field
from img2mesh.recon.field_outputs import field_to_mesh
from img2mesh.recon.stage import reconstruct


@pytest.fixture(scope="module")
def suzanne_mesh(shared):
    return normalize_mesh(load_mesh(shared / "meshes" / "suzanne.obj", up="y"), 1.0)


@pytest.fixture(scope="module")
def suzanne(suzanne_mesh):
    return suzanne_mesh, render_views(suzanne_mesh, ring_cameras(24, 20.0, size=64))


@pytest.fixture(scope="module")
def tiny_views(suzanne_mesh):
    return render_views(suzanne_mesh, ring_cameras(8, 20.0, size=32))


def small_neus(steps: int, **overrides) -> ReconConfig:
    """A CPU-sized NeuS: dense-grid SDF from the hull, a small colour net, few samples."""
    neus = NeuSConfig(resolution=64, coarse_resolution=0, color_resolution=32, feature_dim=8, color_hidden=32,
                      color_layers=2, view_dependent=False, variance_init=0.5, lr=0.01, geometry_lr_scale=0.1,
                      geometry_lr_view_size=0,  # the rate as given at 32 px
                      n_samples=24, n_importance=12, up_sample_steps=2, cos_anneal_steps=0, lambda_curvature=0.0,
                      lambda_area=0.0)
    cfg = ReconConfig(method="neus", steps=steps, rays_per_batch=1024, foreground_fraction=0.5, warmup_steps=10,
                      lr_final_ratio=0.1, checkpoint_every=0, init=InitConfig(hull_resolution=64), neus=neus,
                      loss=LossConfig(lambda_rgb=1.0, lambda_mask=1.0))
    return dataclasses.replace(cfg, **overrides)


def test_short_neus_run_on_suzanne_beats_its_own_start(suzanne, tmp_path):
    """Training must improve on where it starts (the hull with the unseen priors, meshed the same way) by a
    margin: a bound on the result alone passes with no training at all. The SDF grid steps at a rate that
    moves the surface within these 150 steps."""
    gt, views = suzanne
    cfg = small_neus(150)
    cfg = dataclasses.replace(cfg, neus=dataclasses.replace(cfg.neus, geometry_lr_scale=0.3))
    start = reconstruct(dataclasses.replace(cfg, steps=0), views, tmp_path / "start", seed=0)
    result = reconstruct(cfg, views, tmp_path / "trained", seed=0)
    assert result.method == "neus" and result.steps == 150 and result.psnr > 20.0
    before, after = (mesh_metrics(field_to_mesh(load_field(r.field_path), MeshConfig(resolution=96)), gt,
                                  n_points=20_000) for r in (start, result))
    assert after["chamfer"] < 0.93 * before["chamfer"], (before, after)
    assert after["iou"] > before["iou"] + 0.005, (before, after)
    mesh = field_to_mesh(load_field(result.field_path), MeshConfig(resolution=96))
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


@pytest.mark.parametrize("occupancy", ["off", "on"])
def test_killed_run_resumes_bit_identical(tiny_views, tmp_path, occupancy):
    views = tiny_views
    neus = dataclasses.replace(small_neus(1).neus, resolution=32, color_resolution=16, lambda_curvature=0.01,
                               lambda_area=0.01)
    # With the occupancy grid on, refreshes before (step 4) and after (step 6) the kill, full and sampled.
    occ = OccupancyConfig(enabled=occupancy, resolution=24, update_every=2, warmup_steps=4)
    cfg = small_neus(8, checkpoint_every=3, rays_per_batch=256, patch_size=4, patches_per_batch=2,
                     init=InitConfig(hull_resolution=32), neus=neus, occupancy=occ,
                     loss=LossConfig(lambda_rgb=1.0, lambda_mask=1.0, lambda_depth_smooth=0.1, lambda_near_view=0.1))
    whole = reconstruct(cfg, views, tmp_path / "whole", seed=3)
    assert {"depth_smooth", "near_view", "curvature", "area"} <= set(whole.stats["losses"])
    assert ("occupancy_grid" in whole.stats) == (occupancy == "on")
    if occupancy == "on":
        assert 0.0 < whole.stats["occupied_fraction"] < 0.5
    part = reconstruct(cfg, views, tmp_path / "split", seed=3, max_steps=5)  # "killed" after step 5
    assert part.steps == 5 and (tmp_path / "split" / "checkpoint.pt").is_file()
    resumed = reconstruct(cfg, views, tmp_path / "split", seed=3)
    assert resumed.stats["resumed_from"] == 5 and not (tmp_path / "split" / "checkpoint.pt").exists()
    a = torch.load(whole.field_path, weights_only=True)["state"]
    b = torch.load(resumed.field_path, weights_only=True)["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    other_seed = torch.load(reconstruct(cfg, views, tmp_path / "seed4", seed=4).field_path, weights_only=True)
    assert not torch.equal(a["sdf_grid.values"], other_seed["state"]["sdf_grid.values"])


@pytest.mark.parametrize("method", ["neus", "voxel"])
def test_coarse_to_fine_starts_from_the_full_resolution_init_and_resumes_across_the_upsample(tiny_views, tmp_path,
                                                                                             method):
    from img2mesh.recon.fields.grid import DenseGrid
    from img2mesh.recon.start.prepare import prepare_start

    views = tiny_views
    neus = dataclasses.replace(small_neus(1).neus, resolution=32, coarse_resolution=16, upsample_at=0.75,
                               color_resolution=16, lambda_curvature=0.01, lambda_area=0.01)
    voxel = VoxelConfig(resolution=32, coarse_resolution=16, upsample_at=0.75, color_resolution=16, step_size=0.02,
                        lr=0.05, density_scale_init=5.0)
    cfg = small_neus(8, method=method, checkpoint_every=3, rays_per_batch=256, init=InitConfig(hull_resolution=32),
                     neus=neus, voxel=voxel)
    start = prepare_start(cfg.init, views, resolution=32)
    field = METHODS[method].build(cfg, start)
    grid = field.sdf_grid if method == "neus" else field.density_grid
    box, fine = start.box, start.initial_sdf
    if method == "voxel":  # the density init's ramp is two fine voxels wide
        fine = voxel.init_density * (-fine / (float((box[1] - box[0]).max()) / 31)).clamp(-1.0, 1.0)
    fine = DenseGrid(32, 1, *box, fine[:, None], trainable=False)
    assert grid.resolution == 16
    assert torch.allclose(grid.values.detach(), fine(grid.vertex_positions()), atol=1e-5)  # the fine init, sampled

    whole = reconstruct(cfg, views, tmp_path / "whole", seed=2)
    field = load_field(whole.field_path)
    assert (field.sdf_grid if method == "neus" else field.density_grid).resolution == 32  # upsampled at step 6
    part = reconstruct(cfg, views, tmp_path / "split", seed=2, max_steps=5)  # killed before the upsample
    resumed = reconstruct(cfg, views, tmp_path / "split", seed=2)
    assert part.steps == 5 and resumed.stats["resumed_from"] == 5
    a = torch.load(whole.field_path, weights_only=True)["state"]
    b = torch.load(resumed.field_path, weights_only=True)["state"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_hull_and_voxel_methods_go_through_reconstruct(suzanne, tmp_path):
    gt, views = suzanne
    hull = reconstruct(ReconConfig(method="hull", init=InitConfig(hull_resolution=64)), views, tmp_path / "hull")
    hull_mesh = field_to_mesh(load_field(hull.field_path), MeshConfig())
    assert mesh_metrics(hull_mesh, gt, n_points=20_000)["chamfer"] < 0.03
    voxel = ReconConfig(method="voxel", steps=20, rays_per_batch=512, init=InitConfig(hull_resolution=64),
                        voxel=VoxelConfig(resolution=64, color_resolution=32, step_size=0.01, lr=0.05,
                                          density_scale_init=5.0, geometry_lr_scale=0.2))
    result = reconstruct(voxel, views, tmp_path / "voxel")
    assert "density_laplacian" in result.stats["losses"]
    field = load_field(result.field_path)
    mesh = field_to_mesh(field, MeshConfig(resolution=64))
    assert mesh_metrics(mesh, gt, n_points=20_000)["chamfer"] < 0.03
    assert abs(float(field.d_scale.detach()) - 5.0) < 1.0


def _view(rgba, i):
    cam = ring_cameras(2, 20.0, size=rgba.shape[0])[i % 2]
    return View(rgba.astype(np.float32), cam.resized(rgba.shape[1], rgba.shape[0]), f"r_{i}")


def test_bad_views_give_clear_errors(tmp_path):
    rgba = np.zeros((16, 16, 4), np.float32)
    rgba[4:12, 4:12] = 1.0
    small = np.zeros((8, 8, 4), np.float32)
    small[2:6, 2:6] = 1.0
    with pytest.raises(InputError, match="same size"):
        reconstruct(ReconConfig(method="hull"), Views([_view(rgba, 0), _view(small, 1)]), tmp_path)
    opaque = rgba.copy()
    opaque[..., 3] = 1.0
    with pytest.raises(InputError, match="no mask"):
        reconstruct(ReconConfig(method="hull"), Views([_view(rgba, 0), _view(opaque, 1)]), tmp_path)
    empty = rgba.copy()
    empty[..., 3] = 0.0
    with pytest.raises(InputError, match="empty mask"):
        reconstruct(ReconConfig(method="hull"), Views([_view(rgba, 0), _view(empty, 1)]), tmp_path)
    with pytest.raises(InputError, match="no views"):
        reconstruct(ReconConfig(), Views([]), tmp_path)
    with pytest.raises(InputError, match="recon.method"):
        reconstruct(ReconConfig(method="nerf"), Views([_view(rgba, 0)]), tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a field")
    with pytest.raises(InputError, match="not an img2mesh field"):
        load_field(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_field(tmp_path / "missing.pt")


def test_each_method_steps_at_its_own_learning_rate():
    """Every method's section has lr and geometry_lr_scale; its geometry grid steps at their product."""
    from img2mesh.recon.train.trainer import make_optimizer

    cfg = ReconConfig(method="voxel", voxel=VoxelConfig(resolution=8, color_resolution=8, lr=0.02,
                                                        geometry_lr_scale=0.5))
    field = VoxelNeRF(cfg.voxel, FieldBox([-1.0] * 3, [1.0] * 3), 8)
    lrs = sorted(g["base_lr"] for g in make_optimizer(cfg, METHODS["voxel"], field).param_groups)
    assert lrs == [0.01, 0.02] and ReconConfig().neus.lr == 0.01 and ReconConfig().neus_mlp.lr == 5e-4


def test_the_sdf_grid_steps_less_on_small_views():
    """The grid NeuS's rate holds from 256 px up and falls with the view size to half of it; the CPU preset on
    its 128 px views keeps the rate it was tuned at."""
    from img2mesh.recon.train.trainer import geometry_lr, make_optimizer

    neus = ReconConfig().neus
    full = neus.lr * neus.geometry_lr_scale
    rates = [geometry_lr(neus, px) for px in (0, 32, 128, 192, 256, 512)]
    assert rates == pytest.approx([full, full / 2, full / 2, full * 0.75, full, full])
    assert geometry_lr(load_config("cpu").recon.neus, 128) == pytest.approx(0.01 * 0.03)
    assert geometry_lr(ReconConfig().voxel, 64) == ReconConfig().voxel.lr * ReconConfig().voxel.geometry_lr_scale
    cfg = ReconConfig(voxel=VoxelConfig(resolution=8, color_resolution=8, geometry_lr_view_size=256))
    field = VoxelNeRF(cfg.voxel, FieldBox([-1.0] * 3, [1.0] * 3), 8)
    lrs = sorted(g["base_lr"] for g in make_optimizer(cfg, METHODS["voxel"], field, view_size=128).param_groups)
    assert lrs == pytest.approx([0.005, 0.01])


def test_a_loss_that_cannot_run_is_a_config_error(tiny_views, tmp_path):
    cfg = small_neus(2, loss=LossConfig(lambda_near_view=0.1))  # near-view needs patches; none are drawn
    with pytest.raises(InputError, match="recon.loss.lambda_near_view is on but recon.patches_per_batch is 0"):
        reconstruct(cfg, tiny_views, tmp_path / "near")
    cfg = small_neus(2, loss=LossConfig(schedules={"density_laplacian": [0.0, 0.5]}))  # a voxel loss on NeuS
    with pytest.raises(InputError, match="not a loss of recon.method=neus"):
        reconstruct(cfg, tiny_views, tmp_path / "schedule")


def test_the_start_is_cached_in_the_run_and_can_be_passed_in(tiny_views, tmp_path):
    from img2mesh.recon.start.prepare import prepare_start

    cfg = small_neus(4, init=InitConfig(hull_resolution=32), neus=dataclasses.replace(small_neus(1).neus, resolution=32))
    first = reconstruct(cfg, tiny_views, tmp_path / "run", max_steps=2)
    assert first.stats["start"] == "computed" and first.stats["up"] == [0.0, 0.0, 1.0]
    cached = torch.load(tmp_path / "run" / "start.pt", weights_only=True)
    again = reconstruct(cfg, tiny_views, tmp_path / "run")  # resumed: the start is read, not recomputed
    assert again.stats["start"] == "cached" and again.stats["resumed_from"] == 2
    changed = dataclasses.replace(cfg, init=InitConfig(hull_resolution=32, unseen_fill=not cfg.init.unseen_fill),
                                  checkpoint_every=0)
    assert reconstruct(changed, tiny_views, tmp_path / "run").stats["start"] == "computed"  # another init config
    recomputed = torch.load(tmp_path / "run" / "start.pt", weights_only=True)
    assert not torch.equal(recomputed["initial_sdf"], cached["initial_sdf"])

    given = prepare_start(cfg.init, tiny_views, resolution=32)  # e.g. computed on another machine
    passed = reconstruct(cfg, tiny_views, tmp_path / "passed", start=given)
    assert passed.stats["start"] == "computed" and not (tmp_path / "passed" / "start.pt").exists()
    a = torch.load(passed.field_path, weights_only=True)["state"]
    b = torch.load(reconstruct(cfg, tiny_views, tmp_path / "own").field_path, weights_only=True)["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


SPHERE_METHOD_FILE = '''"""A toy method: NeuS with a sphere whose radius is the only geometry parameter, and its own setting."""
from dataclasses import dataclass

import torch

from img2mesh.data.settings import number
from img2mesh.recon.fields.neus import NeuSField
from img2mesh.recon.methods.neus import NeuS, NeuSConfig


@dataclass
class SphereConfig(NeuSConfig):
    log_radius: float = number(-0.7, high=0)  # the sphere's radius at step 0, log world units


class SphereField(NeuSField):
    def __init__(self, settings, box):
        super().__init__(settings, box)
        self.log_radius = torch.nn.Parameter(torch.tensor(settings.log_radius))
        self.color_feature = torch.nn.Parameter(torch.zeros(settings.feature_dim))

    def sdf(self, x):
        return (x - self.center).norm(dim=-1) - self.log_radius.exp()

    def geometry(self, x):
        d = x - self.center
        return d.norm(dim=-1) - self.log_radius.exp(), d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9), None

    def feature(self, x):
        return self.color_feature.expand(len(x), -1)


class Sphere(NeuS):
    section, config = "sphere", SphereConfig
    losses = ("eikonal",)

    def make(self, settings, box, init, device):
        return SphereField(settings, box)

    def geometry_parameters(self, field):
        return [field.log_radius]
'''


def test_a_new_method_is_one_file_and_one_dict_entry(tiny_views, tmp_path, monkeypatch):
    """A method the code was never told about, with its own settings: one file (written here) plus its entry
    in METHODS. Its config section, its settings check, the trainer, field files and meshing all follow."""
    path = tmp_path / "sphere_method.py"
    path.write_text(SPHERE_METHOD_FILE)
    spec = importlib.util.spec_from_file_location("sphere_method", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(METHODS, "sphere", module.Sphere())  # the one dict entry

    config_class = recon_config_class(METHODS)  # what recon/config.py builds from METHODS when imported
    assert "sphere" in method_sections(METHODS) and "sphere" not in ReconConfig.__dataclass_fields__
    base = small_neus(30, method="sphere")
    cfg = config_class(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
                       sphere=module.SphereConfig(**{**dataclasses.asdict(base.neus), "lr": 0.05,
                                                     "geometry_lr_scale": 1.0}))
    check_recon_config(cfg)
    with pytest.raises(InputError, match=r"recon\.sphere\.log_radius=0\.5: must be a number <= 0"):
        check_recon_config(dataclasses.replace(cfg, sphere=dataclasses.replace(cfg.sphere, log_radius=0.5)))
    assert "sphere" in stage_settings(cfg) and "neus" not in stage_settings(cfg)

    result = reconstruct(cfg, tiny_views, tmp_path / "run")
    assert torch.load(result.field_path, weights_only=True)["settings"]["log_radius"] == -0.7  # its own only
    field = load_field(result.field_path)
    radius = float(field.log_radius.detach().exp())
    assert result.method == "sphere" and result.steps == 30 and abs(radius - np.exp(-0.7)) > 0.01  # it trained
    mesh = field_to_mesh(field, MeshConfig(resolution=48))
    distance = np.linalg.norm(mesh.vertices - field.center.numpy(), axis=1)
    assert len(mesh.faces) > 100 and distance.max() < radius + 0.02
