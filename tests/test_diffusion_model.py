"""The Zero-1-to-3 bundle: save/load through the real loaders, conditioning helpers, loading errors."""
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from img2mesh.data.cameras import Camera, look_at
from img2mesh.data.errors import InputError, ResourceError
from img2mesh.diffusion import Zero123, build_random_zero123, load_zero123
from img2mesh.diffusion.ccprojection import load_cc_projection
from img2mesh.diffusion.generate import anchor_poses
from img2mesh.diffusion.loading import check_model
from img2mesh.diffusion.viewfusion import relative_poses
from img2mesh.diffusion.zero123 import pose_vectors


@pytest.fixture(scope="module")
def tiny():
    return build_random_zero123("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    return tiny.save_pretrained(tmp_path_factory.mktemp("zero123") / "tiny")


def outputs(model: Zero123, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    emb = model.encode_clip(images)
    concat = model.encode_concat(images)
    ctx = model.context(emb, pose_vectors(torch.tensor([0.0, -0.3]), torch.tensor([0.5, 3.0]), torch.zeros(2)))
    eps = model.predict_noise(torch.randn(2, 4, 4, 4, generator=g), torch.tensor(501), ctx, concat)
    return emb, concat, ctx, eps, model.decode(torch.randn(2, 4, 4, 4, generator=g))


def test_save_and_load_roundtrip_gives_identical_outputs(tiny, tiny_dir):
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["cc_projection", "feature_extractor", "image_encoder",
                                                          "model_index.json", "scheduler", "unet", "vae"]
    loaded = load_zero123(tiny_dir, device="cpu", dtype="fp32")
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    for a, b in zip(outputs(tiny), outputs(loaded)):
        assert torch.equal(a, b)
    emb, concat, ctx, eps, image = outputs(loaded)
    assert emb.shape == (2, 32) and concat.shape == (2, 4, 4, 4) and ctx.shape == (2, 1, 32)
    assert eps.shape == (2, 4, 4, 4) and image.shape == (2, 3, 32, 32) and image.abs().max() <= 1.0
    assert loaded.scheduler.config.beta_schedule == "scaled_linear" and loaded.scheduler.config.beta_end == 0.012


def test_attention_runs_through_sdpa(tiny):
    from diffusers.models.attention_processor import AttnProcessor2_0

    assert all(isinstance(p, AttnProcessor2_0) for p in tiny.unet.attn_processors.values())
    assert all(isinstance(p, AttnProcessor2_0) for p in tiny.vae.attn_processors.values())
    assert tiny.image_encoder.config._attn_implementation == "sdpa"


def test_clip_input_is_the_reference_tensor_resize(tiny):
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    pixels = tiny.clip_pixels(images)
    resized = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=True)  # tiny tower is 32 px
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(pixels, ((resized + 1) / 2 - mean) / std)
    big = torch.rand(1, 3, 256, 256) * 2 - 1  # downscaling: no antialiasing, as kornia's resize in the reference
    expected = F.interpolate(big, size=(32, 32), mode="bicubic", align_corners=True, antialias=False)
    torch.testing.assert_close(tiny.clip_pixels(big), ((expected + 1) / 2 - mean) / std)


def test_concat_latent_is_the_unscaled_posterior_mode(tiny):
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    mode = tiny.vae.encode(images).latent_dist.mode()
    assert torch.equal(tiny.encode_concat(images), mode)


def test_pose_vector_of_cameras_with_a_known_answer():
    # Built from positions, not angles: the condition camera on the +x axis at the object's height, the target
    # on the +y axis 30 deg above it (z = 1 at distance 2). Zero-1-to-3's polar angle is measured from +z, so
    # the target ABOVE the condition is -30 deg (in radians); a quarter turn of azimuth: sin 1, cos 0; the
    # same distance: radius change 0.
    condition = Camera(look_at([2.0, 0.0, 0.0]), math.radians(49.1), 64, 64)
    target = Camera(look_at([0.0, math.sqrt(3.0), 1.0]), math.radians(49.1), 64, 64)
    poses = relative_poses([condition, target], condition)
    t = anchor_poses(poses[1], [poses[0]])
    torch.testing.assert_close(t, torch.tensor([[-math.pi / 6, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)
    below = Camera(look_at([0.0, -math.sqrt(3.0), -1.0]), math.radians(49.1), 64, 64)  # 30 deg below, -90 deg
    t = anchor_poses(relative_poses([below], condition)[0], [poses[0]])
    torch.testing.assert_close(t, torch.tensor([[math.pi / 6, -1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)


def test_cc_projection_sizes_come_from_the_weights_when_the_config_lacks_them(tiny_dir, tmp_path):
    folder = tmp_path / "cc"
    shutil.copytree(tiny_dir / "cc_projection", folder)
    (folder / "config.json").write_text(json.dumps({"_class_name": "CCProjection", "_diffusers_version": "0.16.0"}))
    cc = load_cc_projection(folder)
    assert (cc.config.in_channel, cc.config.out_channel) == (36, 32)
    (folder / "config.json").unlink()
    torch.save({"projection.weight": torch.zeros(768, 772), "projection.bias": torch.zeros(768)},
               folder / "diffusion_pytorch_model.bin")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    cc = load_cc_projection(folder)
    assert cc.projection.weight.shape == (768, 772)


def test_folder_missing_subfolders_names_them(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    shutil.rmtree(broken / "vae")
    shutil.rmtree(broken / "cc_projection")
    with pytest.raises(ResourceError, match=r"lacks vae/, cc_projection/"):
        load_zero123(broken, device="cpu")


def test_truncated_weights_say_so(tiny_dir, tmp_path):
    broken = tmp_path / "truncated"
    shutil.copytree(tiny_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(ResourceError, match="truncated or corrupt.*download it again"):
        load_zero123(broken, device="cpu")


def test_hub_id_not_cached_offline_says_how_to_download(tmp_path):
    with pytest.raises(ResourceError, match=r"downloads are off .*`hf download kxic/zero123-xl`.*--model PATH.*"
                                            r"`img2mesh convert CKPT OUT`"):
        load_zero123("kxic/zero123-xl", device="cpu", cache_dir=tmp_path)


def test_hub_id_found_in_the_cache_offline(tiny_dir, tmp_path):
    repo = tmp_path / "models--someone--zero123-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    assert check_model("someone/zero123-tiny", cache_dir=tmp_path) == ("hub", repo / "snapshots" / commit)
    model = load_zero123("someone/zero123-tiny", device="cpu", cache_dir=tmp_path)
    assert model.unet.config.in_channels == 8


def test_loading_casts_without_diffusers_dtype_warnings(tiny_dir, capfd):
    load_zero123(tiny_dir, device="cpu", dtype="bf16")
    assert "kept in float32" not in capfd.readouterr().err


def test_not_a_model_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="check the --model path"):
        load_zero123(str(tmp_path / "nothing" / "here" / "x"), device="cpu")
    image = tmp_path / "photo.png"
    image.write_bytes(b"not weights")
    with pytest.raises(InputError, match="is not a model"):
        load_zero123(image, device="cpu")


def test_bf16_on_cpu_runs_the_half_precision_path(tiny_dir):
    model = load_zero123(tiny_dir, device="cpu", dtype="bf16")
    assert model.unet.dtype == torch.bfloat16 and model.vae.dtype == torch.bfloat16
    emb, concat, ctx, eps, image = outputs(model)
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all() and torch.isfinite(image).all()
