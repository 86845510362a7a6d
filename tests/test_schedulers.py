"""The paper's diffusion schedule on diffusers schedulers, the training loss, and classifier-free guidance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from safetensors.torch import load_file

from lfdm.guidance import guided_model_output
from lfdm.models.unet3d import FlowUNet3D, UNet3DOutput
from lfdm.schedulers import (
    DEFAULT_STEPS,
    SCHEDULE_BUFFER_NAMES,
    check_schedule_buffers,
    diffusion_loss,
    make_scheduler,
    make_training_scheduler,
    official_betas,
    official_schedule,
)

FIXTURES = Path(__file__).parent / "fixtures" / "official_parity"


@pytest.fixture(scope="module")
def checkpoint_schedule() -> dict[str, torch.Tensor]:
    diffusion = torch.load(FIXTURES / "dm_official.pth", map_location="cpu", weights_only=True)["diffusion"]
    return {name: diffusion[name] for name in SCHEDULE_BUFFER_NAMES}


def test_official_schedule_matches_the_reference_float64_values():
    reference = load_file(FIXTURES / "dm_io.safetensors")
    ours = official_schedule()
    for name in SCHEDULE_BUFFER_NAMES:
        expected = reference[f"schedule.float64.{name}"].numpy()
        np.testing.assert_allclose(ours[name], expected, rtol=1e-12, atol=1e-300, err_msg=name)
    assert official_betas()[-1] == 0.9999, "the last beta is clipped at 0.9999 (diffusers' own cosine: 0.999)"


def test_official_schedule_in_float32_equals_the_checkpoint_buffers(checkpoint_schedule):
    ours = official_schedule()
    for name, buffer in checkpoint_schedule.items():
        assert torch.equal(torch.from_numpy(ours[name]).float(), buffer), name
    check_schedule_buffers(checkpoint_schedule, source="fixture")  # does not raise


def test_a_linear_schedule_is_rejected(checkpoint_schedule):
    linear = dict(checkpoint_schedule, betas=torch.linspace(1e-4, 0.02, 1000))
    with pytest.raises(ValueError, match=r"different noise schedule: \['betas'\]"):
        check_schedule_buffers(linear, source="a linear model")


def test_training_scheduler_uses_the_exact_betas_and_settings():
    scheduler = make_training_scheduler()
    assert torch.equal(scheduler.betas, torch.from_numpy(official_betas()).float())
    config = scheduler.config
    assert config.prediction_type == "epsilon" and config.variance_type == "fixed_small"
    assert config.thresholding and config.dynamic_thresholding_ratio == 0.9 and not config.clip_sample
    assert config.sample_max_value > 1e6, "a cap of 1.0 would turn dynamic thresholding into clipping"


def official_threshold(x0: torch.Tensor) -> torch.Tensor:
    """s = max(90th percentile of |x0| per sample, 1); clamp(x0, -s, s) / s."""
    s = torch.quantile(x0.flatten(1).abs(), 0.9, dim=1).clamp(min=1.0).view(-1, 1, 1, 1, 1)
    return x0.clamp(-s, s) / s


def test_dynamic_thresholding_rescales_instead_of_clipping():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 8, 8, generator=generator) * torch.tensor([1e5, 0.5]).view(2, 1, 1, 1, 1)
    thresholded = make_training_scheduler()._threshold_sample(x0)
    torch.testing.assert_close(thresholded, official_threshold(x0), rtol=1e-6, atol=1e-7)
    assert thresholded[0].abs().max() == 1.0 and (thresholded[0].abs() < 0.5).float().mean() > 0.2
    torch.testing.assert_close(
        thresholded[1], x0[1].clamp(-1, 1), msg=lambda default: f"at the floor s = 1 it is plain clipping: {default}"
    )


def test_add_noise_follows_the_forward_process():
    scheduler = make_training_scheduler()
    clean, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    timesteps = torch.tensor([0, 500])
    schedule = official_schedule()
    expected = torch.stack(
        [
            float(schedule["sqrt_alphas_cumprod"][t]) * clean[i]
            + float(schedule["sqrt_one_minus_alphas_cumprod"][t]) * noise[i]
            for i, t in enumerate(timesteps.tolist())
        ]
    )
    torch.testing.assert_close(scheduler.add_noise(clean, noise, timesteps), expected, atol=2e-5, rtol=1e-4)


SAMPLER_CLASSES = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}


@pytest.mark.parametrize("name", sorted(SAMPLER_CLASSES))
def test_every_sampler_shares_the_official_schedule(name):
    scheduler = make_scheduler(name)
    assert isinstance(scheduler, SAMPLER_CLASSES[name])
    assert torch.equal(scheduler.betas, torch.from_numpy(official_betas()).float())
    assert scheduler.config.thresholding and scheduler.config.dynamic_thresholding_ratio == 0.9
    assert scheduler.config.sample_max_value > 1e6
    scheduler.set_timesteps(DEFAULT_STEPS[name])
    assert len(scheduler.timesteps) == DEFAULT_STEPS[name]
    assert int(scheduler.timesteps[0]) == 999, "sampling starts from pure noise at the last training step"


@pytest.mark.parametrize("name", sorted(SAMPLER_CLASSES))
def test_every_sampler_runs_a_few_steps_to_finite_clean_latents(name):
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 2, 8, 8, generator=generator) * 1.6 - 0.8  # a "clean latent" in [-0.8, 0.8]
    sample = torch.randn(1, 3, 2, 8, 8, generator=generator)
    for t in scheduler.timesteps:
        alpha_bar = scheduler.alphas_cumprod[int(t)]
        eps = (sample - alpha_bar.sqrt() * target) / (1 - alpha_bar).sqrt()  # the ideal noise prediction
        sample = scheduler.step(eps, t, sample).prev_sample
    assert torch.isfinite(sample).all()
    assert (sample - target).abs().max() < 0.05, f"{name} did not reach the clean latent"


def test_make_scheduler_keeps_a_saved_schedule(tmp_path):
    make_training_scheduler().save_config(tmp_path)
    reloaded = DDPMScheduler.from_pretrained(tmp_path)
    scheduler = make_scheduler("dpmsolver", reloaded.config)
    assert torch.equal(scheduler.betas, torch.from_numpy(official_betas()).float())
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.final_sigmas_type == "zero"


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match=r"'ddim', 'ddpm', 'dpmsolver', 'unipc'"):
        make_scheduler("euler")


# --- training loss and guidance on a toy U-Net -------------------------------------------------------------------


@pytest.fixture(scope="module")
def unet() -> FlowUNet3D:
    torch.manual_seed(0)
    return FlowUNet3D(
        dim=8, dim_mults=(1, 2), feature_channels=4, label_dim=16, attn_heads=2, attn_dim_head=8,
        spatial_attn_dim_head=8, resnet_groups=4, learn_null_label=True,
    ).eval()  # fmt: skip


def toy_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.rand(2, 3, 3, 8, 8, generator=generator) * 2 - 1
    return latents, torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 16, generator=generator)


def test_diffusion_loss_is_a_seeded_differentiable_scalar(unet):
    latents, features, labels = toy_batch()
    scheduler = make_training_scheduler()
    loss = diffusion_loss(unet, scheduler, latents, features, labels, generator=torch.Generator().manual_seed(3))
    again = diffusion_loss(unet, scheduler, latents, features, labels, generator=torch.Generator().manual_seed(3))
    assert loss.ndim == 0 and loss.item() > 0 and loss.item() == again.item()
    loss.backward()
    assert unet.init_conv.weight.grad is not None
    unet.zero_grad()


def test_diffusion_loss_drops_labels_with_the_given_probability(unet):
    latents, features, labels = toy_batch()
    scheduler = make_training_scheduler()
    with torch.no_grad():
        always = diffusion_loss(
            unet, scheduler, latents, features, labels,
            null_label_probability=1.0, generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
        never = diffusion_loss(
            unet, scheduler, latents, features, labels,
            null_label_probability=0.0, generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
        unconditional = diffusion_loss(
            unet, scheduler, latents, features, unet.null_label_embedding.expand(2, -1),
            null_label_probability=0.0, generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
    torch.testing.assert_close(always, unconditional)
    assert always.item() != never.item()


class ZeroUNet(torch.nn.Module):
    """Predicts zeros, so the loss is the mean square of the target."""

    def forward(self, sample, *args, **kwargs):
        return UNet3DOutput(sample=torch.zeros_like(sample))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_diffusion_loss_regresses_the_target_of_the_prediction_type(prediction_type):
    latents, features, labels = toy_batch()
    scheduler = make_training_scheduler(prediction_type=prediction_type)
    loss = diffusion_loss(ZeroUNet(), scheduler, latents, features, labels, generator=torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)  # the loss draws eps first, then t
    noise = torch.randn(latents.shape, generator=draws)
    timesteps = torch.randint(0, 1000, (2,), generator=draws)
    abar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
    target = {
        "epsilon": noise,
        "v_prediction": abar.sqrt() * noise - (1 - abar).sqrt() * latents,
        "sample": latents,
    }[prediction_type]
    torch.testing.assert_close(loss, target.pow(2).mean())
    assert make_scheduler("dpmsolver", scheduler.config).config.prediction_type == prediction_type


def test_an_unknown_prediction_type_names_the_choices():
    with pytest.raises(ValueError, match="v_prediction"):
        make_training_scheduler(prediction_type="x0")


class CountingUNet(torch.nn.Module):
    """Forwards to a U-Net and records the batch size of every call."""

    def __init__(self, unet: FlowUNet3D):
        super().__init__()
        self.unet = unet
        self.null_label_embedding = unet.null_label_embedding
        self.batches = []

    def forward(self, sample, *args, **kwargs):
        self.batches.append(sample.shape[0])
        return self.unet(sample, *args, **kwargs)


def test_guidance_scale_one_is_a_single_conditional_pass(unet):
    latents, features, labels = toy_batch()
    counting = CountingUNet(unet)
    with torch.no_grad():
        guided = guided_model_output(counting, latents, torch.tensor([10, 900]), features, labels, 1.0)
        plain = unet(latents, torch.tensor([10, 900]), features, labels).sample
    assert counting.batches == [2]
    torch.testing.assert_close(guided, plain, rtol=0, atol=0)


def test_guidance_runs_one_doubled_batch_equal_to_two_passes(unet):
    latents, features, labels = toy_batch()
    counting = CountingUNet(unet)
    timestep = torch.tensor([10, 900])
    with torch.no_grad():
        guided = guided_model_output(counting, latents, timestep, features, labels, 3.0)
        conditional = unet(latents, timestep, features, labels).sample
        unconditional = unet(latents, timestep, features, None).sample
    assert counting.batches == [4], "null and conditional predictions share one U-Net call"
    expected = unconditional + (conditional - unconditional) * 3.0
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-5)


def test_the_old_noise_names_still_work_and_say_the_new_ones(unet):
    from lfdm.guidance import guided_noise
    from lfdm.testing import make_tiny_pipeline

    latents, features, labels = toy_batch()
    with torch.no_grad(), pytest.warns(FutureWarning, match="guided_model_output"):
        old = guided_noise(unet, latents, torch.tensor([10, 900]), features, labels, 2.0)
    with torch.no_grad():
        new = guided_model_output(unet, latents, torch.tensor([10, 900]), features, labels, 2.0)
    torch.testing.assert_close(old, new, rtol=0, atol=0)
    pipe = make_tiny_pipeline()
    pipe.scheduler.set_timesteps(2)
    sample = torch.zeros(1, 3, pipe.num_frames, pipe.latent_size, pipe.latent_size)
    image_features = torch.zeros(1, pipe.unet.config.feature_channels, pipe.latent_size, pipe.latent_size)
    arguments = (sample, pipe.scheduler.timesteps[0], image_features, None, 1.0)
    with torch.no_grad(), pytest.warns(FutureWarning, match="predict_model_output"):
        old = pipe.predict_noise(*arguments)
    with torch.no_grad():
        torch.testing.assert_close(old, pipe.predict_model_output(*arguments), rtol=0, atol=0)
