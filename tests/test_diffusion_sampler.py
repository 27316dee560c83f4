"""The ViewFusion sampler against a plain Zero-1-to-3 DDIM sampler written here from LDM's formulas."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.errors import InputError
from img2mesh.data.preprocess import PreparedInput
from img2mesh.diffusion import DiffusionConfig, build_random_zero123
from img2mesh.diffusion.generate import synthesize
from img2mesh.diffusion.viewfusion import RelativePose
from img2mesh.diffusion.zero123 import pose_vectors

STEPS = 4  # the reference's S = 4 executes t = 501, 251, 1


@pytest.fixture(scope="module")
def model():
    return build_random_zero123("tiny", seed=0)


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(7)
    return torch.rand(1, 3, 32, 32, generator=g) * 2 - 1  # [-1, 1]


def plain_zero123(model, image, pose, x, steps, scale, eta, generator):
    """Zero-1-to-3's own sampler: LDM DDIM (uniform +1 timesteps, noisiest dropped) with [uncond, cond] CFG."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphacums = np.cumprod(1.0 - betas).astype(np.float32)
    ddim_t = np.arange(0, 1000, 1000 // steps) + 1
    alphas, alphas_prev = alphacums[ddim_t], np.asarray([alphacums[0]] + alphacums[ddim_t[:-1]].tolist())
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    c = model.context(model.encode_clip(image), pose)
    concat = model.encode_concat(image)
    executed = np.flip(ddim_t[:-1])
    for i, t in enumerate(executed):
        index = len(executed) - i - 1
        eps_u, eps_c = model.predict_noise(torch.cat([x, x]), torch.tensor(int(t)), torch.cat([torch.zeros_like(c), c]),
                                           torch.cat([torch.zeros_like(concat), concat])).chunk(2)
        e = eps_u + scale * (eps_c - eps_u)
        a_t, a_prev, sigma = (torch.tensor(float(v)) for v in (alphas[index], alphas_prev[index], sigmas[index]))
        pred_x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        noise = sigma * torch.randn(x.shape, generator=generator) if eta > 0 else 0.0
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev - sigma ** 2).sqrt() * e + noise
    return x


def cfg(**kw):
    return DiffusionConfig(**{"steps": STEPS, "guidance_scale": 3.0, "eta": 1.0, "max_batch": 8, **kw})


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_one_anchor_equals_plain_zero123(model, image, eta):
    target = RelativePose(40.0, 20.0, 2.0)
    x_t = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], [target], replace(cfg(), eta=eta),
                      torch.Generator().manual_seed(2), latents=x_t)
    pose = pose_vectors(torch.tensor([-math.radians(20.0)]), torch.tensor([math.radians(40.0)]), torch.zeros(1))
    plain = plain_zero123(model, image, pose, x_t, STEPS, 3.0, eta, torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours.images, model.decode(plain), atol=1e-5, rtol=0)
    assert ours.stats.unet_calls == 3 and ours.stats.unet_rows == 6  # 3 updates x [uncond, cond]


def ring(n):
    return [RelativePose(a if a <= 180 else a - 360, 0.0, 2.0) for a in (360.0 / n * j for j in range(1, n))]


def test_shared_uncond_equals_naive_per_anchor_cfg(model, image):
    inputs, targets = [RelativePose(0.0, 0.0, 2.0)], ring(5)
    fast = synthesize(model, image, inputs, targets, cfg(), torch.Generator().manual_seed(3))
    naive_cfg = replace(cfg(), share_uncond=False, max_batch=2)  # one [uncond, cond] UNet call per anchor
    naive = synthesize(model, image, inputs, targets, naive_cfg, torch.Generator().manual_seed(3))
    assert (fast.images - naive.images).abs().max() < 1e-5
    anchors = sum(len(step.anchors) for step in fast.plan)
    assert naive.stats.unet_rows == 3 * 2 * anchors and naive.stats.unet_calls == 3 * anchors
    assert fast.stats.unet_rows == 3 * (anchors + len(targets))  # one uncond row per view and step
    assert fast.stats.unet_calls < naive.stats.unet_calls
    assert max(len(s.anchors) for s in fast.plan) > 1, "the test must exercise fusion of several anchors"


def test_eta_zero_is_deterministic_and_seeds_reproduce_bit_for_bit(model, image):
    inputs, targets = [RelativePose(0.0, 0.0, 2.0)], ring(3)
    x_t = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    a = synthesize(model, image, inputs, targets, cfg(eta=0.0), torch.Generator().manual_seed(1), x_t)
    b = synthesize(model, image, inputs, targets, cfg(eta=0.0), torch.Generator().manual_seed(99), x_t)
    assert torch.equal(a.images, b.images)  # eta = 0: the generator is never used once x_T is given
    c = synthesize(model, image, inputs, targets, cfg(), torch.Generator().manual_seed(5))
    d = synthesize(model, image, inputs, targets, cfg(), torch.Generator().manual_seed(5))
    assert torch.equal(c.images, d.images)  # eta = 1: the same seed repeats bit for bit


def test_shared_eta_noise_variant_differs_but_is_reproducible(model, image):
    inputs, targets = [RelativePose(0.0, 0.0, 2.0)], ring(3)
    per_anchor = synthesize(model, image, inputs, targets, cfg(), torch.Generator().manual_seed(8))
    shared = synthesize(model, image, inputs, targets, cfg(eta_noise="shared"), torch.Generator().manual_seed(8))
    again = synthesize(model, image, inputs, targets, cfg(eta_noise="shared"), torch.Generator().manual_seed(8))
    assert torch.equal(shared.images, again.images)
    first = per_anchor.plan[0].target  # generated first, from the input alone
    last = per_anchor.plan[-1].target  # -120: the input + the +120 view
    assert len(per_anchor.plan[-1].anchors) == 2
    torch.testing.assert_close(per_anchor.images[first], shared.images[first])  # one anchor: same draws
    assert (per_anchor.images[last] - shared.images[last]).abs().max() > 1e-3  # several anchors: other noise


@pytest.mark.parametrize("mode, calls", [("viewfusion", [1] * 12), ("independent", [4] * 3)])
def test_progress_advances_per_denoising_step(model, image, mode, calls):
    """4 views x 3 updates: ViewFusion reports each view's steps in turn, independent mode all views at once."""
    from img2mesh.diffusion.pipeline import denoising_steps

    seen = []
    synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], ring(5), cfg(mode=mode), torch.Generator().manual_seed(1),
               on_step=seen.append)
    assert denoising_steps(model, STEPS, "reference") == 3 and seen == calls


def test_independent_mode_is_plain_zero123_per_view(model, image):
    inputs, targets = [RelativePose(0.0, 0.0, 2.0)], ring(3)
    x_t = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(9))
    ours = synthesize(model, image, inputs, targets, cfg(mode="independent", eta=0.0), None, x_t)
    for j, target in enumerate(targets):
        pose = pose_vectors(torch.zeros(1), torch.tensor([math.radians(target.azimuth)]), torch.zeros(1))
        plain = plain_zero123(model, image, pose, x_t[j:j + 1], STEPS, 3.0, 0.0, None)
        torch.testing.assert_close(ours.images[j:j + 1], model.decode(plain), atol=1e-5, rtol=0)
    assert ours.stats.unet_calls == 3  # every view's rows batched together (6 rows <= max_batch 8)


def test_guidance_scale_one_skips_the_unconditional_branch(model, image):
    out = synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], ring(3), cfg(guidance_scale=1.0),
                     torch.Generator().manual_seed(0))
    assert out.stats.unet_rows == 3 * (1 + 2)  # view 1: input; view 2: input + view 1; no uncond rows
    assert torch.isfinite(out.images).all()


@pytest.mark.parametrize("mode, schedule", [("viewfusion", "reference"), ("independent", "diffusers")])
def test_synthesis_returns_its_latents_and_the_schedulers_timesteps(model, image, mode, schedule):
    from img2mesh.diffusion.scheduler import make_scheduler

    targets = ring(3)
    out = synthesize(model, image, [RelativePose(0.0, 0.0, 2.0)], targets, cfg(mode=mode, schedule=schedule),
                     torch.Generator().manual_seed(6))
    scheduler = make_scheduler(model.scheduler.config, schedule)
    scheduler.set_timesteps(STEPS)
    assert torch.equal(out.timesteps, scheduler.timesteps)
    if schedule == "reference":
        assert out.timesteps.tolist() == [501, 251, 1]
    assert out.latents.shape == (len(targets), 4, 4, 4) and out.latents.dtype == torch.float32
    torch.testing.assert_close(model.decode(out.latents), out.images, atol=1e-5, rtol=0)  # batch rounding


def prepared(azimuth=90.0, elevation=10.0, seed=0):
    rgba = np.random.default_rng(seed).random((32, 32, 4)).astype(np.float32)
    rgba[..., 3] = 1.0
    return PreparedInput(rgba, camera_from_spherical(elevation, azimuth, 2.0, width=32))


def test_generate_views_returns_the_input_then_views_by_azimuth(model):
    from img2mesh.diffusion import generate_views

    p = prepared()
    views = generate_views(cfg(num_views=4, steps=2), p, model=model, seed=0, remove_background=False)
    assert len(views) == 4 and views[0].is_input and not any(v.is_input for v in views.views[1:])
    assert np.array_equal(views[0].rgba, p.rgba) and views[0].camera is p.camera
    offsets = [(v.camera.azimuth - 90.0) % 360.0 for v in views.views[1:]]
    assert offsets == pytest.approx([90.0, 180.0, 270.0])
    assert all(v.camera.fov_x == p.camera.fov_x and v.camera.width == 32 for v in views)
    assert all(abs(v.camera.elevation - 10.0) < 1e-9 and abs(v.camera.radius - 2.0) < 1e-9 for v in views)
    assert [v.name for v in views] == [f"r_{i:03d}" for i in range(4)]
    assert all(v.rgba.dtype == np.float32 and v.rgba.shape == (32, 32, 4) for v in views)
    again = generate_views(cfg(num_views=4, steps=2), p, model=model, seed=0, remove_background=False)
    assert all(np.array_equal(a.rgba, b.rgba) for a, b in zip(views, again))
    both = generate_views(cfg(num_views=4, steps=2), p, model=model, remove_background=False,
                          inputs=[prepared(azimuth=270.0, seed=1)])
    assert [v.is_input for v in both] == [True, True, False, False]  # the ring's 270 view is the second input
    assert [round((v.camera.azimuth - 90) % 360) for v in both.views[2:]] == [90, 270]


def test_target_cameras_layouts_and_elevation_rings():
    from img2mesh.diffusion.generate import target_cameras

    cams = [prepared(elevation=30.0, azimuth=0.0).camera]
    sync = target_cameras(DiffusionConfig(cameras="syncdreamer16"), cams)
    assert len(sync) == 15  # the layout's view at the input's pose is the input itself
    assert all(abs(c.elevation - 30.0) < 1e-6 and abs(c.radius - 1.5) < 1e-6 for c in sync)
    assert sorted(round(c.azimuth, 1) for c in sync) == [22.5 * i for i in range(1, 16)]
    rings = target_cameras(DiffusionConfig(num_views=3, elevations=[30.0, -10.0]), cams)
    assert sorted((round(c.elevation), round(c.azimuth)) for c in rings) == [
        (-10, 0), (-10, 120), (-10, 240), (30, 120), (30, 240)]
    explicit = target_cameras(DiffusionConfig(), cams, cameras=[camera_from_spherical(5.0, 45.0, 1.8, width=64)])
    assert explicit[0].width == 32 and explicit[0].fov_x == cams[0].fov_x  # the input's lens, the target's pose
    assert abs(explicit[0].radius - 1.8) < 1e-9
    with pytest.raises(InputError):
        target_cameras(DiffusionConfig(num_views=1), cams)


def test_generated_views_get_masks_from_background_removal(model, shared):
    from img2mesh.diffusion import generate_views

    def dark_is_object(rgb):
        return np.where(rgb.mean(axis=-1) < 128, 255, 0).astype(np.uint8)

    views = generate_views(cfg(num_views=3, steps=2), prepared(), model=model, remove_background=dark_is_object)
    for v in views.views[1:]:
        rgb8 = (np.clip(v.rgba[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(v.mask, dark_is_object(rgb8) / 255.0)
    rembg = generate_views(cfg(num_views=2, steps=2), prepared(), model=model, rembg_model="u2netp")
    assert rembg[1].mask.shape == (32, 32) and 0.0 <= rembg[1].mask.min() <= rembg[1].mask.max() <= 1.0


def test_generate_views_loads_cfg_model_when_none_is_given(model, tmp_path):
    from img2mesh.diffusion import generate_views

    folder = model.save_pretrained(tmp_path / "tiny-zero123")
    from_path = generate_views(cfg(num_views=2, steps=2, model=str(folder), dtype="fp32"), prepared(), device="cpu",
                               seed=3, remove_background=False)
    given = generate_views(cfg(num_views=2, steps=2), prepared(), model=model, seed=3, remove_background=False)
    assert np.array_equal(from_path[1].rgba, given[1].rgba)


def test_out_of_memory_halves_the_unet_batch_and_goes_on():
    """The UNet batch halves on CUDA out-of-memory until the rows fit, and the smaller batch is kept."""
    from img2mesh.diffusion.pipeline import Denoiser, SamplerStats

    class TwoRowsFit:
        def predict_noise(self, x, t, context, concat):
            if x.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("too many rows")
            return x * 2 + context[:, :, :1, None] + concat

    stats = SamplerStats()
    unet = Denoiser(TwoRowsFit(), max_batch=8, stats=stats)
    x, context, concat = torch.randn(5, 4, 2, 2), torch.randn(5, 1, 3), torch.randn(5, 4, 2, 2)
    out = unet(x, 1, context, concat)
    assert torch.equal(out, x * 2 + context[:, :, :1, None] + concat)
    assert unet.max_batch == 2 and stats.batch_sizes == [2, 2, 1] and stats.unet_calls == 3
