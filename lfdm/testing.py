"""Tiny randomly initialised pipelines for tests and demos of the plumbing (not of quality).

    pipe = make_tiny_pipeline()                  # 32 px frames, 8x8 latents, 4 frames, 3 labels, DDIM
    video = pipe(image, "smile", num_inference_steps=2).frames   # (1, 4, 32, 32, 3)

Everything is seeded, so two calls with the same arguments build the same weights. A forward pass takes
milliseconds on a CPU. `film_with_moving_camera` turns a still or a video into a clip filmed by a handheld camera,
for driving-face tests and the example clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import FlowUNet3D
from lfdm.pipeline import LFDMPipeline
from lfdm.schedulers import make_scheduler
from lfdm.viz import to_uint8

TINY_LABELS = ("smile", "frown", "surprise")


def tiny_lfae_config(*, width: int = 4, num_regions: int = 3, image_size: int = 32) -> dict:
    """`LatentFlowAutoencoder` arguments for a model of a few channels per layer (`width`, capped at 4 * width)."""
    return dict(
        image_size=image_size,
        num_regions=num_regions,
        region_block_expansion=width,
        region_max_features=4 * width,
        region_num_blocks=3,
        background_block_expansion=width,
        background_max_features=4 * width,
        background_num_blocks=3,
        block_expansion=width,
        max_features=4 * width,
        num_down_blocks=2,
        num_bottleneck_blocks=1,
        flow_block_expansion=width,
        flow_max_features=4 * width,
        flow_num_blocks=3,
    )


def make_tiny_lfae(image_size: int = 32) -> LatentFlowAutoencoder:
    """An LFAE with a few channels per layer; latents are image_size / 4 wide."""
    return LatentFlowAutoencoder(**tiny_lfae_config(image_size=image_size))


def make_tiny_unet(feature_channels: int, *, label_dim: int, num_frames: int, sample_size: int) -> FlowUNet3D:
    """A two-level U-Net (dim 8, mults (1, 2)) with small attention heads."""
    return FlowUNet3D(
        dim=8,
        dim_mults=(1, 2),
        feature_channels=feature_channels,
        label_dim=label_dim,
        attn_heads=2,
        attn_dim_head=8,
        spatial_attn_dim_head=8,
        init_kernel_size=3,
        num_frames=num_frames,
        sample_size=sample_size,
    )


def make_tiny_pipeline(
    seed: int = 0,
    labels: Sequence[str] = TINY_LABELS,
    num_frames: int = 4,
    image_size: int = 32,
    *,
    label_dim: int = 16,
    scheduler: str = "ddim",
) -> LFDMPipeline:
    """A complete `LFDMPipeline` with random weights (seeded), in eval mode on the CPU, float32.

    The U-Net's output is scaled up (its last convolutions re-drawn with a larger spread), so that the labels and
    the noise visibly change the flows even after a few sampling steps: tests can tell videos apart.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        lfae = make_tiny_lfae(image_size)
        unet = make_tiny_unet(
            lfae.feature_channels, label_dim=label_dim, num_frames=num_frames, sample_size=lfae.latent_size
        )
        for head in (unet.flow_head[-1], unet.occlusion_head[-1]):
            torch.nn.init.normal_(head.weight, std=0.5)
        label_encoder = LabelEncoder(labels=list(labels), embedding_dim=label_dim, learned=True)
    finally:
        torch.random.set_rng_state(generator_state)  # building a test model leaves the global RNG alone
    pipe = LFDMPipeline(
        lfae=lfae.eval(), unet=unet.eval(), scheduler=make_scheduler(scheduler), label_encoder=label_encoder.eval()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_test_image(size: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth colourful uint8 (size, size, 3) picture with a bright disc, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    colors = rng.uniform(0.2, 0.8, (3, 3))
    image = colors[0] * xs[..., None] + colors[1] * ys[..., None] + colors[2] * (1 - xs[..., None]) * 0.5
    centre = rng.uniform(0.3, 0.7, 2)
    disc = ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) < 0.04
    image[disc] = 1.0
    return to_uint8(image)


def camera_matrices(num_frames: int, height: int, width: int, size: int, *, pan: float = 0.05, zoom: float = 0.10,
                    shake: float = 0.003, direction=(0.6, -0.8), centre=(0.5, 0.47)) -> np.ndarray:  # fmt: skip
    """(F, 2, 3) output pixels -> frame pixels of a handheld camera filming a (height, width) frame into size x size.

    The camera's window starts as the largest square that leaves room to move, about `centre` (fractions of the
    frame), pans by `pan` of the frame's side along `direction` (x, y; default right and up, so that a portrait's
    head stays in the picture) over the clip, zooms in by `zoom` (the window shrinks by 1 / (1 + zoom)), and shakes
    a little (`shake` of the side, a slow sine in x and y).
    """
    side = min(height, width)
    start = side / (1 + pan)  # the window's side at frame 0: room to pan by `pan` of the side
    matrices = []
    for frame in range(num_frames):
        progress = frame / max(num_frames - 1, 1)
        window = start / (1 + zoom * progress)
        wobble = shake * side * np.array([np.sin(1.3 * frame), np.cos(0.9 * frame)])
        middle = np.array([width, height]) * np.array(centre) - 0.5
        position = middle + pan * side * (progress - 0.5) * np.array(direction) + wobble
        scale = window / size  # frame pixels per output pixel
        offset = position - scale * (size - 1) / 2
        matrices.append(np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]]))
    return np.stack(matrices)


def film_with_moving_camera(frames: np.ndarray, size: int, **camera) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (F, H, W, 3) frames -> (uint8 (F, size, size, 3) the clip a handheld camera films of them, (F, 2, 3) the
    camera's output-pixel -> frame-pixel matrices); `camera` as in `camera_matrices`."""
    matrices = camera_matrices(len(frames), *frames.shape[1:3], size, **camera)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP  # the window is about as large as the output: no aliasing
    filmed = [
        cv2.warpAffine(frame, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT)
        for frame, matrix in zip(frames, matrices, strict=True)
    ]
    return np.stack(filmed), matrices
