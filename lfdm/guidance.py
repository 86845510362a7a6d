"""Classifier-free guidance (Ho & Salimans 2022) for the flow U-Net.

o~ = o_θ(z_t, ∅) + w (o_θ(z_t, y) - o_θ(z_t, ∅)), with o the U-Net's output (its `prediction_type`: the noise ε
as in the paper, the clean sample z_0 as in the shipped model, or v): w = 1 is the plain conditional prediction
(what the paper's demos use), w > 1 pushes the motion further towards the label, w = 0 ignores it.
"""

from __future__ import annotations

import warnings

import torch

from lfdm.models.unet3d import FlowUNet3D


def guided_model_output(
    unet: FlowUNet3D,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    image_features: torch.Tensor,
    label_embedding: torch.Tensor | None,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """The guided U-Net output (B, 3, F, h, w): noise, clean sample or v, whichever the U-Net was trained on.

    sample (B, 3, F, h, w) noisy latents; timestep (B,) or one value; image_features (B, C, h, w);
    label_embedding (B, 768), or None for the null embedding. `guidance_scale` 1.0 runs the U-Net once; any other
    value runs it once on a batch of 2B (null labels first, then the given ones) and mixes the two halves.
    """
    if guidance_scale == 1.0 or label_embedding is None:
        return unet(sample, timestep, image_features, label_embedding).sample
    b = sample.shape[0]
    timestep = torch.as_tensor(timestep, device=sample.device)
    timestep = timestep.reshape(1).expand(b) if timestep.numel() == 1 else timestep
    null = unet.null_label_embedding.to(label_embedding.dtype).expand(b, -1)
    model_output = unet(
        torch.cat([sample, sample]),
        torch.cat([timestep, timestep]),
        torch.cat([image_features, image_features]),
        torch.cat([null, label_embedding]),
    ).sample
    output_null, output_label = model_output.chunk(2)
    return output_null + (output_label - output_null) * guidance_scale


def guided_noise(*args, **kwargs) -> torch.Tensor:
    """Deprecated name of `guided_model_output` (the U-Net's output is the noise only for `prediction_type`
    "epsilon")."""
    warnings.warn("guided_noise is now guided_model_output", FutureWarning, stacklevel=2)
    return guided_model_output(*args, **kwargs)
