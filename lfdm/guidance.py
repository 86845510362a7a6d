"""Classifier-free guidance (Ho & Salimans 2022) for the flow U-Net.

ε̃ = ε_θ(z_t, ∅) + w (ε_θ(z_t, y) - ε_θ(z_t, ∅)): w = 1 is the plain conditional prediction (what the paper's
demos use), w > 1 pushes the motion further towards the label, w = 0 ignores it.
"""

from __future__ import annotations

import torch

from lfdm.models.unet3d import FlowUNet3D


def guided_noise(
    unet: FlowUNet3D,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    image_features: torch.Tensor,
    label_embedding: torch.Tensor | None,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """The guided noise prediction (B, 3, F, h, w).

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
    noise = unet(
        torch.cat([sample, sample]),
        torch.cat([timestep, timestep]),
        torch.cat([image_features, image_features]),
        torch.cat([null, label_embedding]),
    ).sample
    noise_null, noise_label = noise.chunk(2)
    return noise_null + (noise_label - noise_null) * guidance_scale
