"""Sample videos during diffusion training: one fixed test image, every label, the averaged (EMA) model.

Each call writes
- `<stem>.mp4`: one row per label, `generated | warped input | flow | occlusion`, played over the frames;
- `<stem>.png`: the flow and occlusion sequences, two rows per label, one column per frame; all flows share one
  colour scale, so the strength of the motion can be compared across labels and frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import FlowUNet3D
from lfdm.schedulers import make_sampler
from lfdm.training.common import seeded_global_rngs
from lfdm.training.config import DataConfig
from lfdm.video import write_video
from lfdm.viz import flow_magnitude_max, flow_to_color, occlusion_to_image, panel_strip

logger = logging.getLogger(__name__)

TILE = 64  # pixels per frame, flow or occlusion tile in the sample pictures (at least)


def sample_image(data: DataConfig) -> torch.Tensor:
    """The fixed conditioning image (1, 3, H, W) in [0, 1]: frame 0 of the data set's first test video.

    SynthFace: the neutral face of the first test identity. Real videos: frame 0 of the first test clip (all
    clips when the data set has no split), without augmentation.
    """
    if data.dataset == "synthface":
        from lfdm.data.synthetic import SynthFaceDataset

        faces = SynthFaceDataset(
            "test", resolution=data.resolution, num_frames=data.num_frames, num_identities=1, seed=data.seed,
            labels=("neutral",),
        )  # fmt: skip
        return faces[0]["video"][:, 0].unsqueeze(0)
    from dataclasses import replace

    from lfdm.training.common import build_dataset

    clips = build_dataset(replace(data, augment=False), view="clip", split="test")
    with seeded_global_rngs(0):  # frame 0 is the same for every frame draw; the seed keeps the rest quiet
        return clips[0]["video"][:, 0].unsqueeze(0)


@torch.no_grad()
def sample_videos(
    lfae: LatentFlowAutoencoder,
    unet: FlowUNet3D,
    label_encoder: LabelEncoder,
    image: torch.Tensor,
    *,
    scheduler: str = "dpmsolver",
    prediction_type: str = "epsilon",
    num_inference_steps: int | None = None,
    guidance_scale: float = 1.0,
    seed: int = 0,
):
    """One video per label of `label_encoder` from `image` (1, 3, H, W) in [0, 1]: an `LFDMPipelineOutput`
    (numpy: frames, warped (L, F, H, W, 3); flows (L, F, h, w, 2); occlusions (L, F, h, w))."""
    from lfdm.pipeline import LFDMPipeline

    device = next(unet.parameters()).device
    sampler = make_sampler(scheduler, prediction_type)
    pipe = LFDMPipeline(lfae=lfae, unet=unet, scheduler=sampler, label_encoder=label_encoder)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    return pipe(
        image.to(device),
        list(label_encoder.labels),
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="np",
        face="none",  # training frames are framed already
    )


def write_samples(output, stem: str | Path, *, fps: float = 8.0) -> list[Path]:
    """Write `<stem>.mp4` and `<stem>.png` for an `LFDMPipelineOutput` (see the module docstring)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    scale = flow_magnitude_max(output.flows)  # one colour scale over every label and frame
    colours = flow_to_color(output.flows, max_magnitude=scale)  # (L, F, h, w, 3)
    occlusions = occlusion_to_image(output.occlusions)  # (L, F, h, w, 3)
    zoom = max(1.0, TILE / output.frames.shape[2])
    rows = [
        panel_strip(
            [(label, output.frames[i]), ("warped", output.warped[i]), ("flow", colours[i]), ("occl.", occlusions[i])],
            scale=zoom,
        )
        for i, label in enumerate(output.labels)
    ]
    video = write_video(stem.with_suffix(".mp4"), np.concatenate(rows, axis=1), fps=fps)
    picture = stem.with_suffix(".png")
    Image.fromarray(flow_strip(colours, occlusions, output.labels)).save(picture)
    return [video, picture]


def flow_strip(colours: np.ndarray, occlusions: np.ndarray, labels: list[str], gap: int = 2) -> np.ndarray:
    """colours, occlusions uint8 (L, F, h, w, 3) -> one picture: per label a caption column, then a row of flows
    over a row of occlusion maps, frames left to right, tiles of `TILE` pixels (nearest)."""
    num_labels, num_frames, height = colours.shape[:3]
    tile = max(TILE, height)
    repeat = max(1, tile // height)

    def row(images: np.ndarray) -> np.ndarray:  # (F, h, w, 3) -> (h', F * (w' + gap), 3)
        big = images.repeat(repeat, axis=1).repeat(repeat, axis=2)
        padded = np.pad(big, ((0, 0), (0, gap), (0, gap), (0, 0)), constant_values=255)
        return np.concatenate(list(padded), axis=1)

    blocks = []
    for i in range(num_labels):
        tiles = np.concatenate([row(colours[i]), row(occlusions[i])], axis=0)
        caption = _caption_column(labels[i], tiles.shape[0], width=2 * tile)
        blocks.append(np.concatenate([caption, tiles], axis=1))
    return np.concatenate(blocks, axis=0)


def _caption_column(text: str, height: int, width: int) -> np.ndarray:
    """A white (height, width, 3) tile with `text` on it, shrunk to fit."""
    tile = np.full((height, width, 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (text_width, text_height), _ = cv2.getTextSize(text, font, scale, 1)
    if text_width > width - 4:
        scale *= (width - 4) / text_width
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, 1)
    origin = (2, (height + text_height) // 2)
    cv2.putText(tile, text, origin, font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return tile
