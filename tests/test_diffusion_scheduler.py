"""The reference DDIM schedule against LDM's formulas (make_ddim_timesteps / make_ddim_sampling_parameters /
p_sample_ddim), written out here independently of the implementation."""
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from img2mesh.data.errors import InputError
from img2mesh.diffusion.architecture import SCHEDULER
from img2mesh.diffusion.scheduler import ldm_ddim_timesteps, make_scheduler


def ldm_schedule(steps, eta, T=1000):
    """LDM: float64 linear-in-sqrt betas -> float32 alphas_cumprod; uniform timesteps + 1; per-index alphas."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=np.float64) ** 2
    alphacums = np.cumprod(1.0 - betas).astype(np.float32)
    c = T // steps
    ddim_t = np.asarray(list(range(0, T, c))) + 1
    alphas = alphacums[ddim_t].astype(np.float64)
    alphas_prev = np.asarray([alphacums[0]] + alphacums[ddim_t[:-1]].tolist(), dtype=np.float64)
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    return alphacums, ddim_t, alphas, alphas_prev, sigmas


def scheduler():
    return make_scheduler(DDIMScheduler(**SCHEDULER).config, "reference")


def test_timesteps_follow_the_ldm_uniform_rule():
    assert ldm_ddim_timesteps(4).tolist() == [501, 251, 1]
    t75 = ldm_ddim_timesteps(75)
    assert len(t75) == 76 and t75[0] == 976 and t75[-1] == 1  # 77 LDM timesteps (1 .. 989), noisiest dropped
    for steps in (2, 20, 50, 75, 200):
        _, ddim_t, *_ = ldm_schedule(steps, 0.0)
        assert ldm_ddim_timesteps(steps).tolist() == ddim_t[:-1][::-1].tolist()
    # where LDM's own arrays break (S = 3 reaches t = 1000; S = 1 runs nothing) the executed steps stay sane
    assert ldm_ddim_timesteps(3).tolist() == [667, 334, 1] and ldm_ddim_timesteps(1).tolist() == [1]
    s = scheduler()
    s.set_timesteps(75)
    assert s.timesteps.tolist() == t75.tolist()


def test_diffusers_leading_spacing_differs_and_is_only_an_option():
    d = make_scheduler(DDIMScheduler(**SCHEDULER).config, "diffusers")
    d.set_timesteps(75)
    assert len(d.timesteps) == 75 and d.timesteps[0] == 963  # not the reference's 976
    with pytest.raises(InputError):
        make_scheduler(DDIMScheduler(**SCHEDULER).config, "fancy")
    with pytest.raises(InputError):
        ldm_ddim_timesteps(0)


def test_alphas_match_ldm_bit_for_bit():
    s = scheduler()
    s.set_timesteps(75)
    alphacums, *_ = ldm_schedule(75, 0.0)
    assert torch.equal(s.alphas_cumprod, torch.from_numpy(alphacums))
    assert s.final_alpha_cumprod == s.alphas_cumprod[0]


@pytest.mark.parametrize("steps, eta", [(4, 0.0), (4, 1.0), (75, 1.0), (50, 0.5)])
def test_every_step_equals_ldm_p_sample_ddim(steps, eta):
    """Each executed step of the scheduler == LDM's update at the same index (prev alpha, sigma, noise)."""
    s = scheduler()
    s.set_timesteps(steps)
    _, ddim_t, alphas, alphas_prev, sigmas = ldm_schedule(steps, eta)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    total = len(s.timesteps)
    for i, t in enumerate(s.timesteps):
        index = total - i - 1  # LDM's index into its (undropped) per-timestep arrays
        assert ddim_t[index] == int(t)
        a_t, a_prev, sigma = alphas[index], alphas_prev[index], sigmas[index]
        pred_x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        expected = np.sqrt(a_prev) * pred_x0 + np.sqrt(1 - a_prev - sigma ** 2) * eps + sigma * noise
        got = s.step(eps.float(), t, x.float(), eta=eta, variance_noise=noise.float() if eta > 0 else None).prev_sample
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-5)
