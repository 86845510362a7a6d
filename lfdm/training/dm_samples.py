"""Sample videos during diffusion training: one fixed test image, every label, the averaged (EMA) model.

Each call writes
- `<stem>.mp4`: one row per label, `generated | warped input | flow | occlusion`, played over the frames;
- `<stem>.png`: the flow and occlusion sequences, two rows per label, one column per frame; all flows share one
  colour scale, so the strength of the motion can be compared across labels and frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lfdm.data.factory import DataConfig, build_dataset
from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import FlowUNet3D
from lfdm.schedulers import make_sampler
from lfdm.training.stream import seeded_global_rngs
from lfdm.video import write_video
from lfdm.viz import captioned_rows, flow_magnitude_max, flow_to_color, occlusion_to_image, panel_strip, tile_grid

logger = logging.getLogger(__name__)

TILE = 64  # pixels per frame, flow or occlusion tile in the sample pictures (at least)


def sample_image(data: DataConfig) -> torch.Tensor:
    """The fixed conditioning image (1, 3, H, W) in [0, 1]: frame 0 of the data set's first test video.

    SynthFace: the neutral face of the first test identity. Real videos: frame 0 of the first test clip (all
    clips when the data set has no split), without augmentation.
    """
    first_face = {"num_identities": 1, "labels": ("neutral",)} if data.dataset == "synthface" else {}
    clips = build_dataset(data, view="clip", split="test", augment=False, **first_face)
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
    num_frames, height = colours.shape[1:3]
    tile = max(TILE, height)
    repeat = max(1, tile // height)
    rows = []
    for label, flows, occlusion in zip(labels, colours, occlusions, strict=True):
        tiles = np.concatenate([flows, occlusion]).repeat(repeat, axis=1).repeat(repeat, axis=2)
        rows.append((label, tile_grid(tiles, columns=num_frames, gap=gap)))
    return captioned_rows(rows, caption_width=2 * tile, gap=gap, font_scale=0.45)
