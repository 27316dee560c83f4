"""SyncDreamer's DDIM sampler against the original's loop, written out here from its description
(docs/reference.md): every uniform timestep + 1 executed noisiest first, the last step's previous alpha is
alphas_cumprod[0], no clipping, sigma from eq. 16 in float64, z drawn at every step but the last (at eta 0
too) and never added on the last one. The network is an analytic stand-in with SyncDreamer's interface, so
the sampler's maths is checked on its own; tests/test_syncdreamer_e2e.py runs the real (tiny) network."""
import numpy as np
import pytest
import torch
from torch import nn

from img2mesh.data.errors import InputError
from img2mesh.diffusion.syncdreamer.noise import SyncNoise, load_noise
from img2mesh.diffusion.syncdreamer.sampler import SyncSamplerSettings, sample_syncdreamer
from img2mesh.diffusion.syncdreamer.schedule import (check_steps, ddim_coefficients, nearest_valid_steps,
                                                     runs_out_of_schedule, syncdreamer_alphas_cumprod,
                                                     syncdreamer_timesteps)

SIZE = 32  # image px; latents 4x4


class AnalyticSync(nn.Module):
    """SyncDreamer's sampling interface with closed-form maths: eps depends on every view (a stand-in for the
    volume), on t, the condition, the elevation and guidance; views are computed in chunks of
    ``batch_view_num`` and a chunk larger than ``fits`` raises CUDA out-of-memory."""

    class config:  # noqa: N801 - the model's config object
        image_size, latent_size, vae = SIZE, SIZE // 8, {"latent_channels": 4}

    def __init__(self, fits: int = 16):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))
        self.fits, self.calls = fits, []

    @property
    def device(self):
        return self.weight.device

    def encode_input(self, image, posterior_noise):
        return image.mean() + 0.3 * posterior_noise  # [1, 4, h, w]

    def predict_eps(self, x, t, cond, elevation, guidance_scale, batch_view_num):
        self.calls.append(batch_view_num)
        if batch_view_num > self.fits:
            raise torch.cuda.OutOfMemoryError("analytic out of memory")
        shared = x.mean(dim=1, keepdim=True)  # what every view sees of the others
        out = []
        for start in range(0, x.shape[1], batch_view_num):
            v = x[:, start:start + batch_view_num]
            cond_eps = self.weight * v + 0.2 * shared + 0.1 * cond[:, None] + (t / 1000.0) * elevation
            uncond_eps = self.weight * v
            out.append(uncond_eps + guidance_scale * (cond_eps - uncond_eps))
        return torch.cat(out, 1)

    def decode(self, latents):
        return torch.tanh(torch.nn.functional.interpolate(latents[:, :3], scale_factor=8))


def reference_loop(model, x_T, posterior_noise, step_noise, steps, eta, guidance, elevation_deg, image):
    """The original sampler's loop, independent of the implementation under test."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    ac = torch.cumprod(1.0 - betas, 0)
    c = 1000 // steps
    ts = np.asarray(list(range(0, 1000, c))) + 1
    alphas = ac[torch.from_numpy(ts)].double()
    prev = torch.cat([ac[0:1], ac[torch.from_numpy(ts[:-1])]], 0)
    sigmas = (eta * torch.sqrt((1 - prev) / (1 - alphas) * (1 - alphas / prev))).float()
    alphas, sqrt_1m = alphas.float(), torch.sqrt(1.0 - alphas.float())
    cond = model.encode_input(image, posterior_noise)
    elev = torch.from_numpy(np.asarray([np.deg2rad(elevation_deg)], np.float32))
    x = x_T[None].clone()
    total = len(ts)
    for i, t in enumerate(np.flip(ts)):
        index = total - i - 1
        e = model.predict_eps(x, int(t), cond, elev, guidance, 16)
        pred_x0 = (x - sqrt_1m[index] * e) / alphas[index].sqrt()
        dir_xt = torch.clamp(1.0 - prev[index] - sigmas[index] ** 2, min=1e-7).sqrt() * e
        x = prev[index].sqrt() * pred_x0 + dir_xt
        if index != 0:
            x = x + sigmas[index] * step_noise[i][None]
    return x[0]


def draws(steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(syncdreamer_timesteps(steps))
    return SyncNoise(torch.randn(16, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g),
                     torch.randn(n - 1, 16, 4, 4, 4, generator=g))


@pytest.fixture
def image():
    return torch.linspace(-1, 1, 3 * SIZE * SIZE).reshape(1, 3, SIZE, SIZE)


def test_timesteps_all_executed_with_the_plus_one_offset():
    assert syncdreamer_timesteps(4).tolist() == [751, 501, 251, 1]  # the noisiest is not dropped
    t50 = syncdreamer_timesteps(50)
    assert len(t50) == 50 and t50[0] == 981 and t50[-1] == 1 and np.all(np.diff(t50) == -20)


def test_last_step_goes_to_alphas_cumprod_zero_and_sigma_is_eq16():
    ac = syncdreamer_alphas_cumprod()
    k = ddim_coefficients(ac, 4, eta=1.0)
    assert k.alphas_prev[-1] == ac[0] and k.alphas_prev[-1] != 1.0  # t = 1 goes to alphas_cumprod[0], not 1
    assert k.alphas_prev[:-1].tolist() == ac[[501, 251, 1]].tolist()  # each step's prev = next executed t
    a, p = ac[[751, 501, 251, 1]].double(), ac[[501, 251, 1, 0]].double()
    assert torch.equal(k.sigmas, torch.sqrt((1 - p) / (1 - a) * (1 - a / p)).float())
    assert torch.count_nonzero(ddim_coefficients(ac, 4, eta=0.0).sigmas) == 0
    # the schedule is float32 throughout, as the original computes it (not LDM's float64 betas)
    betas64 = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    assert not np.array_equal(ac.numpy(), np.cumprod(1 - betas64).astype(np.float32))


@pytest.mark.parametrize("steps,eta", [(4, 1.0), (7, 0.5), (4, 0.0)])
def test_sampler_matches_the_original_loop(steps, eta, image):
    model, noise = AnalyticSync(), draws(steps)
    got = sample_syncdreamer(model, image, 25.0, SyncSamplerSettings(steps, 2.0, eta, 8), noise=noise)
    want = reference_loop(model, noise.x_T, noise.posterior_noise, noise.step_noise, steps, eta, 2.0, 25.0, image)
    assert torch.equal(got.latents[0], want)
    assert got.timesteps.tolist() == syncdreamer_timesteps(steps).tolist()
    assert got.images.shape == (1, 16, 3, SIZE, SIZE)


def test_no_noise_on_the_last_step(image):
    """Changing every step's z but the last changes the result; there is no z for the last step at all."""
    model, noise = AnalyticSync(), draws(4)
    base = sample_syncdreamer(model, image, 30.0, SyncSamplerSettings(4, 2.0, 1.0), noise=noise).latents
    assert noise.step_noise.shape[0] == 3  # 4 executed steps, z after the first three only
    changed = SyncNoise(noise.x_T, noise.posterior_noise, noise.step_noise.clone())
    changed.step_noise[-1] += 1.0  # the z after step 3 of 4: the last one added
    assert not torch.equal(sample_syncdreamer(model, image, 30.0, SyncSamplerSettings(4, 2.0, 1.0),
                                              noise=changed).latents, base)


def test_seeded_runs_draw_z_at_eta_zero_too_and_match_explicit_draws(image):
    """The generator is consumed in the original's order (posterior, x_T, one z per step but the last) at any
    eta, so a seeded run equals the same draws given explicitly."""
    settings = SyncSamplerSettings(5, 2.0, 1.0, 8)
    states = []
    for eta in (1.0, 0.0):
        g = torch.Generator().manual_seed(3)
        sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(5, 2.0, eta, 8), generator=g)
        states.append(g.get_state())
    assert torch.equal(states[0], states[1])
    g = torch.Generator().manual_seed(3)
    posterior, x_T = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 16, 4, 4, 4, generator=g)
    step_noise = torch.stack([torch.randn(1, 16, 4, 4, 4, generator=g)[0] for _ in range(4)])
    assert torch.equal(g.get_state(), states[0])
    seeded = sample_syncdreamer(AnalyticSync(), image, 30.0, settings, generator=torch.Generator().manual_seed(3))
    explicit = sample_syncdreamer(AnalyticSync(), image, 30.0, settings, noise=SyncNoise(x_T[0], posterior, step_noise))
    assert torch.equal(seeded.latents, explicit.latents)


def test_views_per_call_do_not_change_the_result_and_out_of_memory_halves_them(image):
    noise = draws(4)
    results = {}
    for bvn in (16, 8, 4, 1):
        results[bvn] = sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(4, 2.0, 1.0, bvn),
                                          noise=noise).latents
    assert all(torch.allclose(results[16], r, atol=1e-6) for r in results.values())
    tight = AnalyticSync(fits=2)
    out = sample_syncdreamer(tight, image, 30.0, SyncSamplerSettings(4, 2.0, 1.0, 8), noise=noise)
    assert out.batch_view_num == 2 and tight.calls[:3] == [8, 4, 2] and set(tight.calls[3:]) == {2}
    assert torch.allclose(out.latents, results[16], atol=1e-6)


def test_several_instances_each_get_their_own_posterior_and_noise(image):
    out = sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(4, 2.0, 1.0),
                             sample_num=3, generator=torch.Generator().manual_seed(0))
    assert out.latents.shape == (3, 16, 4, 4, 4) and out.images.shape == (3, 16, 3, SIZE, SIZE)
    assert not torch.equal(out.latents[0], out.latents[1])


def test_step_counts_the_original_cannot_run_are_refused_with_the_nearest_valid_ones():
    for bad in (3, 9, 27, 36, 37, 500 + 1, 999, 1000, 0):
        assert runs_out_of_schedule(bad)
        with pytest.raises(InputError, match="cannot run"):
            check_steps(bad)
    assert nearest_valid_steps(27) == [26, 28] and nearest_valid_steps(3) == [2, 4]
    with pytest.raises(InputError, match="use 26 or 28"):
        check_steps(27)
    assert check_steps(50) is None and check_steps(200) is None
    note = check_steps(30)  # 1000 // 30 = 33: timesteps 1, 34, ..., 991
    assert "runs 31 DDIM steps" in note and len(syncdreamer_timesteps(30)) == 31


def test_noise_files_are_shape_checked_in_one_line(tmp_path, image):
    noise = draws(4)
    path = tmp_path / "noise.pt"
    torch.save({"x_T": noise.x_T, "posterior_noise": noise.posterior_noise, "step_noise": noise.step_noise}, path)
    loaded = load_noise(path)
    assert torch.equal(loaded.step_noise, noise.step_noise)
    with pytest.raises(InputError, match=r"step_noise is \[3, 16, 4, 4, 4\], expected \[4, 16"):
        sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(5, 2.0, 1.0), noise=loaded)
    with pytest.raises(InputError, match="no 'step_noise'"):
        sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(4, 2.0, 1.0),
                           noise=SyncNoise(noise.x_T, noise.posterior_noise))
    # at eta 0 the step noise is not needed
    sample_syncdreamer(AnalyticSync(), image, 30.0, SyncSamplerSettings(4, 2.0, 0.0),
                       noise=SyncNoise(noise.x_T, noise.posterior_noise))
    torch.save({"x_T": noise.x_T, "eps": noise.x_T}, path)
    with pytest.raises(InputError, match="unknown keys"):
        load_noise(path)
    with pytest.raises(InputError, match="does not exist"):
        load_noise(tmp_path / "missing.pt")
