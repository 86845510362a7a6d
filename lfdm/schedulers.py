"""The diffusion process of LFDM on diffusers schedulers, configured to the paper's schedule.

Notation (variable -> paper: LFDM, Ni et al. CVPR 2023 Sec. 3.2, on DDPM, Ho et al. 2020):
- `latents` -> z_0, the clean latent flow sequence (B, 3, F, h, w); `noisy` -> z_t; `noise` -> ε ~ N(0, I);
- `alphas_cumprod[t]` -> ᾱ_t; z_t = sqrt(ᾱ_t) z_0 + sqrt(1 - ᾱ_t) ε (DDPM eq. 4);
- the U-Net predicts ε; the training loss is ||ε - ε_θ(z_t, t, image features, y)||² (DDPM eq. 14);
- sampling predicts ẑ_0 = (z_t - sqrt(1 - ᾱ_t) ε_θ) / sqrt(ᾱ_t), clips it by dynamic thresholding (Saharia et al.
  2022: s = 90th percentile of |ẑ_0| per sample, at least 1; ẑ_0 <- clamp(ẑ_0, -s, s) / s) and draws z_{t-1}
  from the posterior q(z_{t-1} | z_t, ẑ_0) (DDPM eqs. 6-7).

Schedule: cosine (Nichol & Dhariwal 2021, s = 0.008), 1000 steps, betas clipped at 0.9999, computed in float64.
diffusers' own cosine schedule clips at 0.999, so the exact betas are passed as `trained_betas`. diffusers then
accumulates ᾱ in float32; next to the float64 values of the paper's code that is a relative difference of up to
2e-4 at t = 999 (ᾱ_999 ≈ 2.4e-10) and far less elsewhere, which moves a sampling step by < 1e-6.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

logger = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS = 1000
THRESHOLD_PERCENTILE = 0.9
# The paper's thresholding has no upper bound on s; diffusers clamps s to `sample_max_value` (default 1.0, which
# would turn thresholding into plain clipping). s can reach ~1e5 at t = 999 (1 / sqrt(ᾱ_999) ≈ 6.4e4), so the cap is
# set far beyond anything reachable.
THRESHOLD_MAX_VALUE = 1e9
NULL_LABEL_PROBABILITY = 0.1
# Sampling steps when neither the caller nor the model says how many (`default_steps`): the usual counts of each
# sampler. A model's own measured count (`MODEL_DEFAULT_STEPS_KEY`) wins over these.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmsolver": 25, "unipc": 25}
FALLBACK_STEPS = 50  # a scheduler class lfdm does not build (`make_scheduler`), e.g. one a user set by hand
# The scheduler config key that holds a model's measured step counts, {sampler name: steps} (`set_default_steps`).
# diffusers' `from_config` registers every key its class does not take as a "hidden" config entry, so the key
# survives `save_pretrained` / `from_pretrained` of the scheduler and of the whole pipeline; the leading underscore
# marks it private to diffusers, which then loads it without the "not expected and will be ignored" warning an
# unknown public key gets. It is a mapping by sampler name rather than one number because `from_config` also
# carries it to a different scheduler class: a count measured for DPM-Solver++ must not become DDIM's.
MODEL_DEFAULT_STEPS_KEY = "_lfdm_default_steps"
SCHEDULE_BUFFER_NAMES = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def official_betas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, s: float = 0.008) -> np.ndarray:
    """The paper's cosine betas (num_train_timesteps,) float64: 1 - ᾱ(t+1)/ᾱ(t), ᾱ(t) = cos²(((t/T)+s)/(1+s) π/2)."""
    steps = torch.linspace(0, num_train_timesteps, num_train_timesteps + 1, dtype=torch.float64)
    alphas_cumprod = torch.cos(((steps / num_train_timesteps) + s) / (1 + s) * torch.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - (alphas_cumprod[1:] / alphas_cumprod[:-1])
    return torch.clip(betas, 0, 0.9999).numpy()


def official_schedule(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> dict[str, np.ndarray]:
    """The 12 float64 schedule tables of the paper's diffusion wrapper, by the names its checkpoints use."""
    betas = official_betas(num_train_timesteps)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


def check_schedule_buffers(buffers: Mapping[str, torch.Tensor], *, source: str, rtol: float = 1e-5) -> None:
    """Raise ValueError unless `buffers` holds the 12 official schedule tables with the official values."""
    missing = [name for name in SCHEDULE_BUFFER_NAMES if name not in buffers]
    if missing:
        raise ValueError(
            f"{source} lacks the diffusion schedule buffers {missing}; a released flowdiff_*.pth has all of "
            f"{list(SCHEDULE_BUFFER_NAMES)}."
        )
    length = len(buffers["betas"])
    expected = official_schedule(length)
    wrong = []
    for name in SCHEDULE_BUFFER_NAMES:
        ours = torch.from_numpy(expected[name]).float()
        theirs = buffers[name].detach().float().cpu()
        if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=rtol, atol=0.0):
            wrong.append(name)
    if wrong:
        raise ValueError(
            f"{source} was trained with a different noise schedule: {wrong} differ from the cosine schedule "
            f"(s=0.008, {length} steps, betas clipped at 0.9999) that lfdm's schedulers use. Sampling it with "
            "them would give wrong results."
        )


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def make_training_scheduler(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, prediction_type: str = "epsilon"
) -> DDPMScheduler:
    """The paper's diffusion process: `DDPMScheduler` with the exact cosine betas, ε-prediction, the posterior
    variance ("fixed_small") and dynamic thresholding at the 0.9 quantile with floor 1 and no cap.

    Its `add_noise` gives z_t for training; with 1000 inference steps its `step` is the paper's ancestral sampler.
    `prediction_type` "v_prediction" (v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) z_0, Salimans & Ho 2022) or "sample" (z_0)
    changes what the network predicts; every sampler built from this config follows it.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}; got {prediction_type!r}.")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        trained_betas=official_betas(num_train_timesteps),
        prediction_type=prediction_type,
        variance_type="fixed_small",
        clip_sample=False,
        thresholding=True,
        dynamic_thresholding_ratio=THRESHOLD_PERCENTILE,
        sample_max_value=THRESHOLD_MAX_VALUE,
        timestep_spacing="trailing",
    )


# Per-sampler settings on top of the shared schedule. "trailing" spacing starts every sampler at t = 999 (the paper's
# DDIM path started lower, at 909 for 10 steps). DDIM: deterministic (eta 0, the diffusers default in `step`),
# the last step lands on ᾱ = 1. DPM-Solver++ and UniPC: 2nd order multistep in data (ẑ_0) prediction, which is
# where dynamic thresholding applies; the final step goes to sigma 0 with a first-order update
# (`lower_order_final`), which keeps few-step sampling stable.
_SAMPLERS = {
    "ddpm": (DDPMScheduler, {"variance_type": "fixed_small", "clip_sample": False}),
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0}),
    "dpmsolver": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero", "lower_order_final": True},
    ),
    "unipc": (
        UniPCMultistepScheduler,
        {"predict_x0": True, "solver_order": 2, "final_sigmas_type": "zero", "lower_order_final": True},
    ),
}
_SHARED_KEYS = (
    "num_train_timesteps",
    "trained_betas",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
)


def make_sampler(name: str, prediction_type: str = "epsilon") -> SchedulerMixin:
    """The sampler `name` on the paper's schedule for a U-Net trained with `prediction_type` (training samples and
    the exported pipeline of `train-dm`)."""
    return make_scheduler(name, make_training_scheduler(prediction_type=prediction_type).config)


def make_scheduler(name: str, base_config: Mapping | None = None) -> SchedulerMixin:
    """A sampler by name ("ddpm" | "ddim" | "dpmsolver" | "unipc") sharing the schedule of `base_config`.

    `base_config` is a scheduler config (e.g. `pipe.scheduler.config`) whose betas, number of training steps,
    prediction type and thresholding are kept; by default the paper's (`make_training_scheduler().config`).
    The model's measured step counts (`MODEL_DEFAULT_STEPS_KEY`) of `base_config` travel along, so that
    `default_steps` of the new scheduler still knows them.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(_SAMPLERS)}.")
    base = dict(base_config if base_config is not None else make_training_scheduler().config)
    if base.get("trained_betas") is None:
        raise ValueError("`base_config` must carry `trained_betas` (the exact schedule); got a config without them.")
    scheduler_class, settings = _SAMPLERS[name]
    shared = {key: base[key] for key in _SHARED_KEYS if key in base}
    scheduler = scheduler_class(**shared, **settings, timestep_spacing="trailing")
    if base.get(MODEL_DEFAULT_STEPS_KEY):
        scheduler.register_to_config(**{MODEL_DEFAULT_STEPS_KEY: dict(base[MODEL_DEFAULT_STEPS_KEY])})
    return scheduler


def sampler_name(scheduler: SchedulerMixin) -> str | None:
    """The `make_scheduler` name of a scheduler ("ddpm" | "ddim" | "dpmsolver" | "unipc"), by its class; None for
    a class lfdm does not build."""
    return next((name for name, (cls, _) in _SAMPLERS.items() if type(scheduler) is cls), None)


def default_steps(scheduler: SchedulerMixin) -> int:
    """How many steps `scheduler` samples when the caller gives no count: the count the model measured for this
    sampler (`set_default_steps`), else the sampler's usual count (`DEFAULT_STEPS`), else `FALLBACK_STEPS`."""
    name = sampler_name(scheduler)
    measured = dict(scheduler.config.get(MODEL_DEFAULT_STEPS_KEY) or {})
    if name in measured:
        return int(measured[name])
    return DEFAULT_STEPS.get(name, FALLBACK_STEPS)


def set_default_steps(scheduler: SchedulerMixin, steps: int) -> SchedulerMixin:
    """Record `steps` as the model's default count for this scheduler's sampler, in its config (saved with it).

    Counts recorded for other samplers stay. Raises ValueError for a class lfdm does not build or a count < 1.
    """
    name = sampler_name(scheduler)
    if name is None:
        raise ValueError(
            f"{type(scheduler).__name__} is not one of lfdm's samplers ({sorted(_SAMPLERS)}); build the scheduler "
            "with lfdm.schedulers.make_scheduler first."
        )
    if int(steps) != steps or steps < 1:
        raise ValueError(f"the default number of steps must be a whole number >= 1; got {steps}.")
    measured = dict(scheduler.config.get(MODEL_DEFAULT_STEPS_KEY) or {})
    scheduler.register_to_config(**{MODEL_DEFAULT_STEPS_KEY: {**measured, name: int(steps)}})
    return scheduler


def diffusion_loss(
    unet: torch.nn.Module,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    image_features: torch.Tensor,
    label_embedding: torch.Tensor,
    *,
    null_label_probability: float = NULL_LABEL_PROBABILITY,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training objective (DDPM eq. 14, as LFDM trains it): MSE between ε and ε_θ at a uniform random t
    (or between v or z_0 and the network's output, when `scheduler.config.prediction_type` says so).

    latents (B, 3, F, h, w) clean z_0 in about [-1, 1]; image_features (B, C, h, w); label_embedding (B, 768).
    Each sample's label is replaced by the U-Net's null embedding with probability `null_label_probability`
    (classifier-free guidance). `unet` is a `FlowUNet3D` (or a wrapper that forwards to one). Returns a scalar.
    """
    b, device = latents.shape[0], latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=device)
    drop_label = torch.rand(b, generator=generator, device=device) < null_label_probability
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, image_features, label_embedding, drop_label=drop_label).sample
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    elif prediction_type == "sample":
        target = latents
    else:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}; got {prediction_type!r}.")
    return F.mse_loss(prediction.float(), target.float())
