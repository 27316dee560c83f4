"""Fields and volume rendering: encodings, grids, NeuS init, renders of an analytic sphere, occupancy grid."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from img2mesh.data.cameras import camera_from_spherical, camera_rays
from img2mesh.data.errors import InputError
from img2mesh.recon.config import NeuSConfig, NeuSMLPConfig, OccupancyConfig, VoxelConfig
from img2mesh.recon.fields.box import FieldBox
from img2mesh.recon.fields.encoding import FrequencyEncoding, HashGridEncoding, make_hash_grid
from img2mesh.recon.fields.grid import DenseGrid
from img2mesh.recon.fields.neus import GridNeuSField, MLPNeuSField
from img2mesh.recon.fields.voxel import VoxelNeRF
from img2mesh.recon.render.occupancy import OccupancyGrid, nerfacc_cuda_available, use_occupancy_grid
from img2mesh.recon.render.rays import RayBatch, ray_aabb, ray_sphere
from img2mesh.recon.render.volume import neus_alpha, render_neus, render_voxel, sample_pdf

BOX = ([-1.0] * 3, [1.0] * 3)
UNIT_SPHERE_BOX = FieldBox([-3**-0.5] * 3, [3**-0.5] * 3)  # its bounding sphere (the MLP's normalisation) has radius 1


def _grid_neus(cfg: NeuSConfig, radius: float, box=BOX, **box_args) -> GridNeuSField:
    """A grid NeuS holding the SDF of a sphere of ``radius`` at the origin."""
    pos = DenseGrid(cfg.resolution, 1, *box).vertex_positions()
    return GridNeuSField(cfg, FieldBox(*box, **box_args), cfg.resolution, sdf_init=pos.norm(dim=-1) - radius)


def test_trilinear_grid_matches_grid_sample_and_autograd():
    g = DenseGrid(9, 2, *BOX)
    with torch.no_grad():
        g.values.normal_()
    x = (torch.rand(50, 3) * 2 - 1).requires_grad_(True)
    value, grad = g(x, with_grad=True)
    # grid_sample indexes (W, H, D) = our (z, y, x)
    ref = F.grid_sample(g.volume()[None], x.flip(-1).reshape(1, -1, 1, 1, 3), align_corners=True).reshape(2, -1).T
    assert torch.allclose(value, ref, atol=1e-5)
    autograd = torch.autograd.grad(value[:, 1].sum(), x)[0]
    assert torch.allclose(grad[:, 1], autograd, atol=1e-4)


def test_one_channel_grid_gives_the_same_values_with_and_without_a_graph():
    """The no-graph path (grid_sample) and the gathers agree inside the box and clamp alike outside it."""
    g = DenseGrid(11, 1, [-1.0, -1.0, -1.0], [1.0, 1.0, 1.5])
    with torch.no_grad():
        g.values.normal_()
    x = torch.rand(500, 3) * 3.4 - 1.6  # a third of the points outside the box
    with torch.no_grad():
        fast = g(x)
    traced = g(x)  # the parameter needs a gradient: the gathers
    assert traced.requires_grad and not fast.requires_grad
    assert fast.shape == traced.shape == (500, 1)
    assert torch.allclose(fast, traced, atol=1e-5)


def test_frequency_encoding_values():
    enc = FrequencyEncoding(3, 2)
    x = torch.tensor([[0.5, 0.0, -1.0]])
    out = enc(x)
    assert out.shape == (1, 3 + 3 * 4) and enc.out_dim == 15
    assert torch.allclose(out[0, :3], x[0])
    assert torch.allclose(out[0, 3:6], torch.sin(x[0]))  # frequency 1
    assert torch.allclose(out[0, 6:9], torch.sin(2 * x[0]))  # frequency 2
    assert torch.allclose(out[0, 12:15], torch.cos(2 * x[0]))


def test_hash_grid_encoding_shapes_gradients_and_cpu_fallback():
    enc = HashGridEncoding(n_levels=4, n_features=2, log2_table=10, base_resolution=4, finest_resolution=32)
    assert enc.dense.tolist() == [True, True, False, False]  # 5^3, 9^3 fit 2^10 entries; 17^3, 33^3 hash
    x = torch.rand(64, 3)
    out = enc(x)
    assert out.shape == (64, 8)
    out.pow(2).sum().backward()
    assert enc.embeddings.grad.abs().sum() > 0
    # A vertex of a dense level reads its own entry exactly (no collisions below the table size).
    with torch.no_grad():
        enc.embeddings.zero_()
        enc.embeddings[0, 1 + 5 * (2 + 5 * 3)] = torch.tensor([1.0, -1.0])  # level 0 vertex (1, 2, 3) of a 4-grid
    v = enc(torch.tensor([[1 / 4, 2 / 4, 3 / 4]]))
    assert torch.allclose(v[0, :2], torch.tensor([1.0, -1.0]))
    assert isinstance(make_hash_grid(4, 2, 10, 4, 32, device="cpu"), HashGridEncoding)


def test_neus_mlp_geometric_init_is_a_sphere():
    torch.manual_seed(0)
    field = MLPNeuSField(NeuSMLPConfig(), UNIT_SPHERE_BOX)
    dirs = F.normalize(torch.randn(64, 3), dim=-1)
    assert (field.sdf(torch.zeros(1, 3)) < 0).all()
    assert (field.sdf(0.95 * dirs) > 0).all()
    # Along each direction the zero crossing sits around the init radius 0.5 (the init is a noisy sphere
    # at finite width: measured mean 0.40-0.55, std 0.03-0.11 over seeds).
    radii = torch.linspace(0.0, 1.0, 201)
    values = field.sdf((dirs[:, None, :] * radii[None, :, None]).reshape(-1, 3)).reshape(64, 201)
    crossing = radii[(values < 0).sum(dim=1)]
    assert abs(crossing.mean().item() - 0.5) < 0.12 and crossing.std().item() < 0.15


def _camera_batch(size=24, radius=0.9):
    cam = camera_from_spherical(20.0, 30.0, 2.0, width=size)
    o, d = camera_rays(cam)
    near, far = ray_sphere(o, d, torch.zeros(3), radius)
    n = o.shape[0]
    return RayBatch(o, d, torch.ones(n, 3), torch.ones(n), near, far, torch.ones(n))


def test_neus_render_of_an_analytic_sphere_has_the_right_opacity_and_depth():
    cfg = NeuSConfig(resolution=48, coarse_resolution=0, color_resolution=8, feature_dim=4, color_hidden=8,
                     color_layers=2, variance_init=0.6)  # inv_s = e^6 ~ 400
    field = _grid_neus(cfg, 0.5)
    rays = _camera_batch()
    with torch.no_grad():
        out = render_neus(field, rays, 32, 32, 4)
    t_in, t_out = ray_sphere(rays.origins, rays.dirs, torch.zeros(3), 0.5)
    hit = t_out > t_in + 0.3  # clear hits (not grazing)
    miss = t_out <= t_in
    assert hit.sum() > 50 and miss.sum() > 50
    assert out.opacity[hit].min() > 0.97
    assert out.opacity[miss].max() < 0.05
    assert (out.depth[hit] - t_in[hit]).abs().mean() < 5e-3
    assert torch.allclose(out.rgb[miss], torch.ones_like(out.rgb[miss]), atol=0.05)  # white background


def test_voxel_render_of_a_dense_ball():
    cfg = VoxelConfig(resolution=48, color_resolution=8, density_scale_init=5.3)
    grid = DenseGrid(48, 1, *BOX)
    sdf = grid.vertex_positions().norm(dim=-1) - 0.5
    field = VoxelNeRF(cfg, FieldBox(*BOX), 48, density_init=(-sdf / 0.01).clamp(-1, 1))  # sigma ~ 2e4 per unit of depth
    rays = _camera_batch()
    with torch.no_grad():
        out = render_voxel(field, rays, 0.005)
    t_in, t_out = ray_sphere(rays.origins, rays.dirs, torch.zeros(3), 0.5)
    hit, miss = t_out > t_in + 0.3, t_out <= t_in
    assert out.opacity[hit].min() > 0.97 and out.opacity[miss].max() < 0.05
    # The density ramps up over one voxel (0.042) past the surface: rendered depth lies inside that voxel.
    offset = (out.depth[hit] - t_in[hit]).mean().item()
    assert 0.0 < offset < 2.0 / 47


def test_neus_alpha_of_a_crossing_and_of_empty_space():
    inv_s = 200.0
    # A section whose midpoint is on the surface, ray head-on (cos = -1), length 0.1: nearly opaque.
    a = neus_alpha(torch.tensor([0.0]), torch.tensor([-1.0]), torch.tensor([0.1]), inv_s)
    assert a.item() > 0.99
    # Far outside, or leaving the surface (cos > 0): transparent.
    assert neus_alpha(torch.tensor([0.3]), torch.tensor([-1.0]), torch.tensor([0.01]), inv_s).item() < 1e-3
    assert neus_alpha(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.1]), inv_s).item() < 1e-3


def test_sample_pdf_concentrates_where_the_weight_is():
    bins = torch.linspace(0, 1, 11)[None]  # 10 bins
    weights = torch.zeros(1, 10)
    weights[0, 7] = 1.0
    t = sample_pdf(bins, weights, 16)
    assert ((t >= 0.7) & (t <= 0.8)).float().mean() > 0.9


def test_ray_box_and_sphere_intersections():
    o = torch.tensor([[0.0, 0.0, -3.0], [5.0, 5.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far = ray_aabb(o, d, torch.tensor([-1.0] * 3), torch.tensor([1.0] * 3))
    assert near[0].item() == pytest.approx(2.0) and far[0].item() == pytest.approx(4.0) and far[1] <= near[1]
    near, far = ray_sphere(o, d, torch.zeros(3), 1.0)
    assert near[0].item() == pytest.approx(2.0) and far[0].item() == pytest.approx(4.0) and far[1] == near[1]


def _sphere_grid_field(radius: float, res: int = 64, bound_radius: float | None = None, margin: float = 0.0):
    """A grid NeuS field holding the exact SDF of a sphere, optionally bounded by a smaller sphere's SDF."""
    cfg = NeuSConfig(resolution=res, coarse_resolution=0, color_resolution=8, feature_dim=4, color_hidden=8,
                     color_layers=1)
    box = ([-0.5] * 3, [0.5] * 3)
    pos = DenseGrid(res, 1, *box).vertex_positions()
    bound = None if bound_radius is None else pos.norm(dim=-1) - bound_radius
    return _grid_neus(cfg, radius, box, bound_sdf=bound, bound_resolution=res, bound_margin=margin)


def test_surface_area_of_a_grid_sphere():
    neus = _sphere_grid_field(0.3, res=96)
    area = float(neus.surface_area().detach())
    assert area == pytest.approx(4 * 3.14159265 * 0.3**2, rel=0.03)


def test_surface_area_gradient_shrinks_a_free_surface():
    """Descending the area alone (no views) moves a sphere's surface inwards: mean-curvature flow."""
    neus = _sphere_grid_field(0.3)
    opt = torch.optim.Adam([neus.sdf_grid.values], lr=1e-3)
    before = float(neus.surface_area().detach())
    for _ in range(30):
        opt.zero_grad()
        neus.surface_area().backward()
        opt.step()
    after = float(neus.surface_area().detach())
    assert after < 0.99 * before
    surface = torch.tensor([[0.3, 0.0, 0.0], [0.0, -0.3, 0.0], [0.0, 0.0, 0.3]])
    assert torch.all(neus.sdf(surface) > 0.002)  # the old surface is now outside: it moved in, evenly


def test_grid_laplacian_ignores_a_ramp_and_descending_it_removes_bumps():
    """The grid fields' smoothness prior (lambda_curvature, lambda_density_laplacian): zero on a linear field (a
    plane's SDF, a density ramp), positive on voxel-scale bumps, and its gradient flattens them."""
    grid = DenseGrid(16, 1, [-1.0] * 3, [1.0] * 3)
    with torch.no_grad():
        grid.values.copy_(grid.vertex_positions() @ torch.tensor([[0.3], [-0.5], [0.8]]))
    points = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    assert float(grid.laplacian_loss(points).detach()) < 1e-8
    with torch.no_grad():
        grid.values.add_(0.05 * torch.randn(grid.values.shape, generator=torch.Generator().manual_seed(1)))
    opt = torch.optim.Adam([grid.values], lr=0.005)
    before = float(grid.laplacian_loss(points).detach())
    for _ in range(50):
        opt.zero_grad()
        grid.laplacian_loss(points).backward()
        opt.step()
    assert before > 1.0 and float(grid.laplacian_loss(points).detach()) < 0.2 * before


def test_meshing_bound_allows_the_margin_and_cuts_beyond_it():
    """The hull bound cuts surfaces more than bound_margin outside it, and leaves those within alone."""
    probe = torch.tensor([[0.30, 0.0, 0.0], [0.0, 0.0, 0.30]])
    tight = _sphere_grid_field(0.3, bound_radius=0.29, margin=0.0)
    assert torch.allclose(tight.mesh_sdf(probe), torch.full((2,), 0.01), atol=2e-3)  # clipped to the bound
    loose = _sphere_grid_field(0.3, bound_radius=0.29, margin=0.02)
    assert torch.allclose(loose.mesh_sdf(probe), torch.zeros(2), atol=2e-3)  # the field's own surface


def _ball_fields(radius: float):
    """A NeuS grid SDF and a voxel density of the same ball, over BOX."""
    neus = _grid_neus(NeuSConfig(resolution=48, coarse_resolution=0, color_resolution=8, feature_dim=4,
                                 color_hidden=8, color_layers=2, variance_init=0.6), radius)
    sdf = DenseGrid(48, 1, *BOX).vertex_positions().norm(dim=-1) - radius
    voxel = VoxelNeRF(VoxelConfig(resolution=48, color_resolution=8, density_scale_init=5.3), FieldBox(*BOX), 48,
                      density_init=(-sdf / 0.01).clamp(-1, 1))
    return neus, voxel


@pytest.mark.parametrize("kind", ["neus", "voxel"])
def test_occupancy_grid_cuts_rays_to_the_field_and_renders_the_same(kind):
    field = dict(zip(("neus", "voxel"), _ball_fields(0.5)))[kind]
    occ = OccupancyGrid(OccupancyConfig(enabled="on", resolution=64), BOX)
    occ.update(0, field)
    rays = _camera_batch()
    near, far = occ.spans(rays.origins, rays.dirs, rays.near, rays.far)
    t_in, t_out = ray_sphere(rays.origins, rays.dirs, torch.zeros(3), 0.5)
    hit = t_out > t_in + 0.3  # clear hits (a grazing ray runs along the cells of the surface for long)
    clear_miss = ray_sphere(rays.origins, rays.dirs, torch.zeros(3), 0.65)[1] == 0  # past the cells and padding
    # A cell counts when its one random sample lies within the opacity band (~0.03 here), and so do its
    # neighbours: a span may start the band + a cell's diagonal (0.054) + a cell + the half-cell padding
    # (~0.13 in all) before the surface, more along a slanted ray; the bounding sphere leaves up to 0.4.
    early, late = t_in[hit] - near[hit], far[hit] - t_out[hit]
    assert early.min() >= 0 and early.max() < 0.25, (early.min(), early.max())
    assert late.min() >= 0 and late.max() < 0.25, (late.min(), late.max())
    assert (near[clear_miss] == far[clear_miss]).all() and clear_miss.sum() > 50
    assert (far - near).sum() < 0.5 * (rays.far - rays.near).sum()  # most of the bounding sphere is skipped
    tight = dataclasses.replace(rays, near=near, far=far)
    with torch.no_grad():
        full, cut = ((render_neus(field, b, 64, 32, 4) if kind == "neus" else render_voxel(field, b, 0.005))
                     for b in (rays, tight))
    assert (full.opacity - cut.opacity).abs().max() < 0.02
    assert (full.depth[hit] - cut.depth[hit]).abs().max() < 0.01


def _occupied_radius(occ) -> float:
    """Radius of the ball whose volume the occupied cells of BOX (volume 8) fill."""
    return (occ.occupied_fraction * 8.0 * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def test_occupancy_grid_follows_a_shrinking_field():
    big, _ = _ball_fields(0.5)
    small, _ = _ball_fields(0.3)
    occ = OccupancyGrid(OccupancyConfig(enabled="on", resolution=32, ema_decay=0.5, warmup_steps=10**6), BOX)
    occ.update(0, big)
    before = _occupied_radius(occ)
    for step in range(16, 16 * 12, 16):
        occ.update(step, small)
    after = _occupied_radius(occ)
    # The occupied cells (interior included) make a ball up to ~2.5 cells (0.16) wider than the field's.
    assert 0.5 < before < 0.5 + 0.16 and 0.3 < after < 0.3 + 0.16, (before, after)
    occ.update(17, big)  # off the refresh step: no change
    assert _occupied_radius(occ) == after


def test_occupancy_grid_is_chosen_by_config_and_device():
    assert not use_occupancy_grid(OccupancyConfig(enabled="auto"), "cpu")  # nerfacc's CUDA path only
    assert use_occupancy_grid(OccupancyConfig(enabled="on"), "cpu")
    assert not use_occupancy_grid(OccupancyConfig(enabled="off"), "cpu")
    with pytest.raises(InputError, match="auto, on or off"):
        use_occupancy_grid(OccupancyConfig(enabled="sometimes"), "cpu")
    if not torch.cuda.is_available():
        assert not nerfacc_cuda_available()


@pytest.mark.skipif(not nerfacc_cuda_available(), reason="needs CUDA and nerfacc's compiled extension")
def test_occupancy_spans_from_nerfacc_cuda_match_the_torch_march():
    field, _ = _ball_fields(0.5)
    rays = _camera_batch(size=64)
    cuda = OccupancyGrid(OccupancyConfig(enabled="on", resolution=32), BOX, device="cuda")
    cpu = OccupancyGrid(OccupancyConfig(enabled="on", resolution=32), BOX)
    cpu.update(0, field)
    cuda.load_state_dict(cpu.state_dict())
    assert cuda.use_cuda and not cpu.use_cuda
    near_c, far_c = cuda.spans(*(t.cuda() for t in (rays.origins, rays.dirs, rays.near, rays.far)))
    near, far = cpu.spans(rays.origins, rays.dirs, rays.near, rays.far)
    assert torch.allclose(near_c.cpu(), near, atol=cpu.cell) and torch.allclose(far_c.cpu(), far, atol=cpu.cell)


def test_tiny_cuda_nn_is_chosen_by_config_and_never_assumed():
    from img2mesh.data.errors import InputError, UnavailableError
    from img2mesh.recon.methods.neus import use_tcnn

    assert not use_tcnn("auto", "hashgrid", "cpu")  # CUDA only
    assert not use_tcnn("on", "frequency", "cpu")  # only a hash grid has a tiny-cuda-nn form
    with pytest.raises(UnavailableError, match="tcnn=on needs CUDA"):
        use_tcnn("on", "hashgrid", "cpu")
    with pytest.raises(InputError, match="use auto, on or off"):
        use_tcnn("sometimes", "hashgrid", "cpu")
