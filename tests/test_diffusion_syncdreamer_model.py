"""SyncDreamer's network: the geometry conventions of the original with known answers, the guidance batch,
the input latent, and the conversion of an original checkpoint (tiny, random) through the users' path."""
import json
import math

import pytest
import torch
import yaml
from syncdreamer_tiny import original_state_dict, original_yaml, tiny_syncdreamer, write_tiny_syncdreamer

from img2mesh.cli import main
from img2mesh.data.errors import InputError, ResourceError
from img2mesh.diffusion.syncdreamer.cameras import target_intrinsics, target_poses
from img2mesh.diffusion.syncdreamer.checkpoint import convert_checkpoint, syncdreamer_from_checkpoint
from img2mesh.diffusion.syncdreamer.loading import is_syncdreamer, load_syncdreamer
from img2mesh.diffusion.syncdreamer.model import SyncDreamer
from img2mesh.diffusion.syncdreamer.sizes import FULL, build_random_syncdreamer, tiny_config
from img2mesh.diffusion.syncdreamer.unet import DepthTransformer, condition_layout
from img2mesh.diffusion.syncdreamer.volume import (frustum_points, project_to_grid, projection_matrices,
                                                   sample_volume, unproject_view, voxel_centres)

SIZES = dict(volume_size=8, frustum_depth=8)


@pytest.fixture(scope="module")
def tiny():
    return tiny_syncdreamer(seed=2)


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    _, ckpt, clip = write_tiny_syncdreamer(tmp_path_factory.mktemp("release"), model=tiny)
    return ckpt, clip


def draws(model, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    size, h = model.config.image_size, model.latent_size
    return (torch.rand(1, 3, size, size, generator=g) * 2 - 1, torch.randn(batch, 4, h, h, generator=g),
            torch.randn(batch, 16, 4, h, h, generator=g))


def same_network(a: SyncDreamer, b: SyncDreamer):
    image, posterior, x_t = draws(a)
    ca, cb = a.encode_input(image, posterior), b.encode_input(image, posterior)
    assert torch.equal(ca.clip_embedding, cb.clip_embedding) and torch.equal(ca.input_latent, cb.input_latent)
    assert torch.equal(a.predict_eps(x_t, 501, ca, math.radians(15), 2.0, 8),
                       b.predict_eps(x_t, 501, cb, math.radians(15), 2.0, 8))
    assert torch.equal(a.decode(x_t[0, :2]), b.decode(x_t[0, :2]))
    for name in ("poses", "Ks", "azimuth", "alphas_cumprod"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# -- geometry: known answers ----------------------------------------------------------------------------------
def test_voxel_axes_are_z_y_x_from_an_ij_meshgrid():
    centres = voxel_centres(3, 0.5)  # coordinates -0.5, 0, 0.5 on each axis
    assert centres[:, 0, 1, 2].tolist() == [0.5, 0.0, -0.5]  # index (z=0, y=1, x=2) -> (x, y, z) = (0.5, 0, -0.5)
    assert centres[:, 2, 0, 0].tolist() == [-0.5, -0.5, 0.5]


def test_the_origin_projects_to_pixel_coordinate_16_of_a_32_pixel_map_not_15_5():
    """The half-pixel convention: K's principal point is W/2 = 128 at 256 px (16 at 32), and the sampler puts
    pixel i at coordinate i (align_corners=True), so the image centre is read at pixel 16, not at 15.5."""
    K, pose = target_intrinsics(256)[:1], target_poses()[:1]
    origin = torch.zeros(1, 3, 1)
    grid = project_to_grid(origin, projection_matrices(32 / 256, K, pose), 32)
    assert torch.allclose(grid, torch.full((1, 1, 2), 16 / 15.5 - 1), atol=1e-6)
    columns = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32)  # a feature map whose value is its column
    rows = columns.transpose(2, 3)
    centres = torch.zeros(1, 3, 1, 1, 1)
    assert unproject_view(columns, centres, K, pose, 256).item() == pytest.approx(16.0, abs=1e-4)
    assert unproject_view(rows, centres, K, pose, 256).item() == pytest.approx(16.0, abs=1e-4)


def test_points_behind_the_camera_are_divided_by_the_clamped_depth():
    proj = torch.eye(4)[None]
    points = torch.tensor([[[0.001], [0.002], [-3.0]]])  # camera frame = world frame here; depth -3 -> 1e-4
    grid = project_to_grid(points, proj, 21)  # (S - 1) / 2 = 10
    assert torch.allclose(grid, torch.tensor([[[10 / 10 - 1, 20 / 10 - 1]]]), atol=1e-4)


def test_voxels_outside_a_view_read_zero_features(tiny):
    """Bilinear with zeros padding: a constant feature map of ones gives 1 where a voxel projects inside the
    map and 0 outside (the volume's near corners fall outside the 49-degree field of view)."""
    V = 8
    centres = voxel_centres(V, 0.5)[None]
    ones = torch.ones(1, 1, 8, 8)
    sampled = unproject_view(ones, centres, tiny.Ks[:1], tiny.poses[:1], 64)[0, 0]
    assert sampled.max() == pytest.approx(1.0) and sampled.min() == 0.0
    inside = (sampled > 0).float().mean()
    assert 0.3 < inside < 1.0


def test_frustum_spans_camera_distance_minus_plus_0_866_in_48_depths_and_passes_through_the_origin():
    pose, K = target_poses()[:1], target_intrinsics(256)[:1]
    ones = torch.ones(1, 1, 32, 32)
    points, depth = frustum_points(48, 32, 256, pose, K, ones * 1.5 - 0.86603, ones * 1.5 + 0.86603)
    assert depth.shape == (1, 1, 48, 32, 32)
    assert depth[0, 0, 0, 0, 0].item() == pytest.approx(1.5 - 0.86603) and depth[0, 0, -1, 0, 0].item() == pytest.approx(
        1.5 + 0.86603)
    centre = -pose[0, :, :3].T @ pose[0, :, 3]  # camera centre in the world
    distances = (points[0, :, :, 16, 16] - centre[:, None]).norm(dim=0)  # pixel (16, 16) is on the optical axis
    assert torch.allclose(distances, depth[0, 0, :, 16, 16], atol=1e-5)
    points3, _ = frustum_points(3, 32, 256, pose, K, ones * 1.5 - 0.86603, ones * 1.5 + 0.86603)
    assert points3[0, :, 1, 16, 16].abs().max() < 1e-5  # the middle depth, 1.5, at the centre pixel: the origin


def test_frustum_samples_outside_the_volume_are_zero():
    volume = torch.ones(1, 1, 4, 4, 4)  # spans [-0.5, 0.5]^3
    points = torch.tensor([[0.0, 0.49, 1.0], [0.0, -0.49, 0.0], [0.0, 0.2, 0.0]]).view(1, 3, 3, 1, 1)
    assert sample_volume(volume, points, 0.5).flatten().tolist() == [1.0, 1.0, 0.0]


def test_view_embedding_is_the_elevation_difference_and_the_azimuth_offsets(tiny):
    emb = tiny.view_embedding(1, math.radians(20))
    assert emb.shape == (1, 16, 4) and emb.dtype == torch.float32
    assert torch.allclose(emb[0, :, 0], torch.full((16,), math.radians(-10)), atol=1e-7)
    az = torch.arange(16) * (2 * math.pi / 16)
    assert torch.allclose(emb[0, :, 1], torch.sin(az), atol=1e-6) and torch.allclose(emb[0, :, 2], torch.cos(az), atol=1e-6)
    assert emb[0, :, 3].abs().max() == 0
    assert tiny.azimuth[8].item() == pytest.approx(-math.pi)  # wrapped to [-pi, pi): view 8 is -180 degrees


# -- the depth attention and the guidance batch -------------------------------------------------------------
def test_zero_volume_features_still_change_the_output_through_groupnorm_and_relu():
    torch.manual_seed(0)
    block = DepthTransformer(dim=16, heads=4, dim_head=4, context_dim=8)
    with torch.no_grad():
        block.proj_context[1].bias.fill_(0.5)  # what the zeros become: ReLU(GroupNorm bias)
    x = torch.randn(2, 16, 4, 4)
    out = block(x, torch.zeros(2, 8, 6, 4, 4))
    assert (out - x).abs().max() > 1e-3


def test_the_released_layout_has_depth_attention_after_the_last_nine_output_blocks():
    widths, dims = [320, 640, 1280, 1280], [64, 128, 256, 512]
    assert condition_layout(widths, 2, dims, 9) == [(1280, 256), (1280, 256), (1280, 128), (640, 128), (640, 128),
                                                    (640, 64), (320, 64), (320, 64), (320, 64)]


def captured_unet_calls(model, *args, **kwargs):
    calls = []
    hook = model.unet.register_forward_pre_hook(lambda module, inputs: calls.append([t.clone() if torch.is_tensor(t)
                                                                                      else t for t in inputs]))
    try:
        eps = model.predict_eps(*args, **kwargs)
    finally:
        hook.remove()
    return eps, calls


def test_one_unet_call_per_chunk_on_cond_rows_then_uncond_rows(tiny):
    image, posterior, x_t = draws(tiny)
    cond = tiny.encode_input(image, posterior)
    eps, calls = captured_unet_calls(tiny, x_t, 251, cond, 0.3, guidance_scale=2.0, batch_view_num=6)
    assert [c[0].shape[0] for c in calls] == [12, 12, 8]  # 6 + 6 + 4 views, each twice
    x, t, context, volume = calls[0]
    n = 6
    assert torch.equal(x[:n, :4], x_t[0, :6]) and torch.equal(x[n:, :4], x_t[0, :6])
    assert torch.equal(x[:n, 4:], (cond.input_latent / 0.18215).expand(n, -1, -1, -1))  # the unscaled sample
    assert x[n:, 4:].abs().max() == 0 and context[n:].abs().max() == 0 and context[:n].abs().max() > 0
    assert all(v[n:].abs().max() == 0 and v[:n].abs().max() > 0 for v in volume.values())
    assert t.tolist() == [251] * 12
    e_c, e_u = (tiny.unet(x, t, context, volume).float()).chunk(2)
    assert torch.allclose(eps[0, :6], e_u + 2.0 * (e_c - e_u), atol=1e-6)


def test_guidance_one_runs_the_conditional_rows_only(tiny):
    image, posterior, x_t = draws(tiny)
    cond = tiny.encode_input(image, posterior)
    _, calls = captured_unet_calls(tiny, x_t, 251, cond, 0.3, guidance_scale=1.0, batch_view_num=16)
    assert [c[0].shape[0] for c in calls] == [16]


def test_the_result_does_not_depend_on_the_chunk_size():
    model = build_random_syncdreamer(tiny_config(**SIZES), seed=4).double()
    image, posterior, x_t = draws(model, batch=2)
    cond = model.encode_input(image.double(), posterior.double())
    x_t = x_t.double()
    reference = model.predict_eps(x_t, 741, cond, [0.1, 0.5], 2.0, 16)
    for chunk in (1, 5, 8):
        assert torch.allclose(model.predict_eps(x_t, 741, cond, [0.1, 0.5], 2.0, chunk), reference, atol=1e-10)


def test_the_input_latent_is_a_posterior_sample_times_0_18215(tiny):
    image, posterior, _ = draws(tiny, batch=2)
    dist = tiny.vae.encode(image).latent_dist
    cond = tiny.encode_input(image, posterior)
    assert torch.allclose(cond.input_latent, (dist.mean + dist.std * posterior) * 0.18215, atol=1e-6)
    assert not torch.allclose(cond.input_latent[0], cond.input_latent[1])  # one draw per instance
    assert torch.allclose(tiny.encode_input(image, torch.zeros_like(posterior)).input_latent[0], dist.mean[0] * 0.18215,
                          atol=1e-6)


def test_half_precision_keeps_the_cameras_and_schedule_in_float32():
    model = build_random_syncdreamer(tiny_config(**SIZES), seed=1)
    poses = model.poses.clone()
    model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.poses.dtype == torch.float32 and torch.equal(model.poses, poses)
    image, posterior, x_t = draws(model)
    eps = model.predict_eps(x_t, 501, model.encode_input(image, posterior), 0.2, 2.0, 8)
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()


# -- conversion and loading ---------------------------------------------------------------------------------
def test_convert_reads_every_size_from_the_tensors_and_the_checkpoint_wins_over_the_archive(tiny, files, tmp_path):
    ckpt, clip = files
    out = convert_checkpoint(ckpt, tmp_path / "converted", clip=clip, **SIZES)
    config = json.loads((out / "config.json").read_text())
    assert config["generator"] == "syncdreamer" and is_syncdreamer(out) and is_syncdreamer(ckpt)
    for key in ("volume_dims", "spatial_dims", "encoder_dims", "conditioned_blocks", "context_dim", "time_dim",
                "image_size", "volume_size", "frustum_depth"):
        assert config[key] == getattr(tiny.config, key), key
    assert config["clip"] == tiny.config.clip and config["unet"]["attention_head_dim"] == 8
    converted = SyncDreamer.from_pretrained(out, dtype="fp32")
    same_network(tiny, converted)  # the archive's own (different) CLIP weights were overwritten
    same_network(tiny, load_syncdreamer(ckpt, clip=clip, dtype="fp32", **SIZES))  # --model CKPT converts in memory


def test_the_cli_converts_with_the_archive_beside_the_checkpoint(tiny, files, tmp_path):
    ckpt, _ = files
    assert main(["convert", str(ckpt), str(tmp_path / "cli"), "--volume-size", "8", "--frustum-depth", "8",
                 "--quiet"]) == 0
    model = load_syncdreamer(tmp_path / "cli", device="cpu", dtype="fp32")
    assert (model.config.volume_size, model.config.frustum_depth) == (8, 8)
    same_network(tiny, model)


def test_heads_come_from_the_original_yaml(tmp_path):
    from dataclasses import replace

    config = tiny_config(**SIZES)
    two_heads = build_random_syncdreamer(replace(config, unet=dict(config.unet, attention_head_dim=2)), seed=6)
    _, ckpt, clip = write_tiny_syncdreamer(tmp_path, model=two_heads)
    (tmp_path / "syncdreamer.yaml").write_text(yaml.safe_dump(original_yaml(two_heads, num_heads=2)))
    right = syncdreamer_from_checkpoint(ckpt, clip, tmp_path / "syncdreamer.yaml", **SIZES)
    same_network(two_heads, right)
    default = syncdreamer_from_checkpoint(ckpt, clip, None, **SIZES)  # SyncDreamer's 8: same shapes, other network
    image, posterior, x_t = draws(two_heads)
    a = two_heads.predict_eps(x_t, 501, two_heads.encode_input(image, posterior), 0.2, 2.0, 16)
    b = default.predict_eps(x_t, 501, default.encode_input(image, posterior), 0.2, 2.0, 16)
    assert (a - b).abs().max() > 1e-4


def test_a_checkpoint_that_contradicts_its_config_is_refused_in_one_line(tiny, files, tmp_path, capsys):
    ckpt, clip = files
    wrong = original_yaml(tiny)
    wrong["model"]["params"]["unet_config"]["params"]["model_channels"] = 64
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    code = main(["convert", str(ckpt), str(tmp_path / "out"), "--clip", str(clip), "--original-config",
                 str(tmp_path / "wrong.yaml"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "model_channels is 32 in the weights but 64" in err, err
    assert not (tmp_path / "out").exists()
    wrong = original_yaml(tiny)
    wrong["model"]["params"]["unet_config"]["params"]["volume_dims"] = [8, 16, 32, 64]
    (tmp_path / "dims.yaml").write_text(yaml.safe_dump(wrong))
    with pytest.raises(InputError, match="volume_dims is"):
        syncdreamer_from_checkpoint(ckpt, clip, tmp_path / "dims.yaml", **SIZES)


def test_foreign_archives_and_checkpoints_are_refused(tiny, files, tmp_path):
    from syncdreamer_tiny import write_clip_archive

    ckpt, clip = files
    other = write_clip_archive(tmp_path / "ViT-B.pt", dict(tiny.config.clip, num_hidden_layers=3))
    with pytest.raises(InputError, match="num_hidden_layers is 2 in the checkpoint but 3 in the archive"):
        syncdreamer_from_checkpoint(ckpt, other, **SIZES)
    state = original_state_dict(tiny)
    state["model_ema.decay"] = torch.tensor(0.999)
    torch.save({"state_dict": state}, tmp_path / "extra.ckpt")
    with pytest.raises(ResourceError, match="1 tensors SyncDreamer does not have"):
        syncdreamer_from_checkpoint(tmp_path / "extra.ckpt", clip, **SIZES)
    del state["model_ema.decay"], state["spatial_volume.frustum_volume_feats.up2.norm.bias"]
    torch.save({"state_dict": state}, tmp_path / "short.ckpt")
    with pytest.raises(ResourceError, match="missing"):
        syncdreamer_from_checkpoint(tmp_path / "short.ckpt", clip, **SIZES)
    with pytest.raises(InputError, match="--clip ViT-L-14.pt"):
        convert_checkpoint(tmp_path / "short.ckpt", tmp_path / "x")  # no archive beside it
    with pytest.raises(InputError, match="multiple of 8"):
        syncdreamer_from_checkpoint(ckpt, clip, volume_size=12)


def test_the_full_size_layout_loads_strictly():
    """The released shapes (built on the meta device) read back to the released architecture."""
    from img2mesh.diffusion.syncdreamer.checkpoint import syncdreamer_config

    with torch.device("meta"):
        full = SyncDreamer(FULL)
    state = original_state_dict(full)
    state["Ks"] = target_intrinsics(256)  # the image size is read from the principal point
    archive = {"visual." + k[len("clip_image_encoder.model.visual."):]: v for k, v in state.items()
               if k.startswith("clip_image_encoder.model.visual.")}
    config = syncdreamer_config(state, archive)
    for key in ("unet", "vae", "clip", "volume_dims", "spatial_dims", "encoder_dims", "conditioned_blocks",
                "context_dim", "time_dim", "view_dim", "view_num", "volume_size", "frustum_depth"):
        assert getattr(config, key) == getattr(FULL, key), key


def test_a_hub_repository_loads_from_the_cache_and_is_one_error_when_absent(tiny, files, tmp_path):
    from img2mesh.diffusion.syncdreamer.loading import CHECKPOINT_NAME, CLIP_NAME, check_source

    ckpt, clip = files
    repo = tmp_path / "hub" / "models--camenduru--SyncDreamer"  # the Hugging Face cache's layout
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / CHECKPOINT_NAME).symlink_to(ckpt)
    (snapshot / CLIP_NAME).symlink_to(clip)
    assert is_syncdreamer("camenduru/SyncDreamer")
    check_source("camenduru/SyncDreamer", cache_dir=tmp_path / "hub")
    same_network(tiny, load_syncdreamer("camenduru/SyncDreamer", cache_dir=tmp_path / "hub", dtype="fp32",
                                          **SIZES))
    with pytest.raises(ResourceError, match="jianfuzhang233/controlnet_syncdreamer is not available") as error:
        check_source("jianfuzhang233/controlnet_syncdreamer", cache_dir=tmp_path / "hub")
    assert "\n" not in str(error.value)
    with pytest.raises(ResourceError, match="lacks model.safetensors"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
        check_source(tmp_path / "half")
