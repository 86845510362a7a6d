"""The app's example driving videos and the README picture of the three motion controls.

Driving videos: SynthFace test videos (an identity none of the example pictures shows), rendered by
`lfdm.data.synthface` at the shipped model's 64 px, written as H.264 to `assets/driving/`.

The picture (`assets/motion_controls.png`), one row each: a driving video; an example face animated by it
(relative motion); a 48-frame video chained from 16-frame clips (every 3rd frame); the same 16-frame video at
motion_scale 0, 1 and 2 (every 3rd frame).

    PYTHONPATH=. python benchmarks/driving_examples.py --videos assets/driving
    PYTHONPATH=. python benchmarks/driving_examples.py --model checkpoints --strip assets/motion_controls.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lfdm.data.synthface.dataset import split_identities
from lfdm.data.synthface.render import render_video
from lfdm.video import write_video

IDENTITY = 2  # the third SynthFace test identity (8388610); the app's example pictures are 0, 1, 8 and 11
LABELS = ("surprise", "happiness", "disgust")
FRAMES, FPS, RESOLUTION = 32, 8, 64
EXAMPLE_PICTURE = Path("assets/examples/synthface_test_8388608.png")
TILE = 64


def write_driving_videos(folder: Path) -> list[Path]:
    identity = split_identities("test", IDENTITY + 1)[IDENTITY]
    return [
        write_video(folder / f"synthface_{label}.mp4", render_video(identity, label, 0, resolution=RESOLUTION,
                                                                     num_frames=FRAMES), FPS)
        for label in LABELS
    ]  # fmt: skip


def _row(name: str, frames: np.ndarray) -> np.ndarray:
    """A captioned row of uint8 (F, H, W, 3) frames."""
    caption = Image.new("RGB", (150, TILE), "white")
    ImageDraw.Draw(caption).text((4, TILE // 2 - 6), name, fill="black")
    tiles = [np.asarray(Image.fromarray(frame).resize((TILE, TILE), Image.BICUBIC)) for frame in frames]
    gaps = [np.full((TILE, 2, 3), 255, np.uint8)] * len(tiles)
    return np.concatenate([np.asarray(caption)] + [x for pair in zip(gaps, tiles, strict=True) for x in pair], axis=1)


def write_strip(model: str, videos: Path, out: Path) -> None:
    from lfdm.pipeline import load_pipeline

    pipe = load_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    picture = Image.open(EXAMPLE_PICTURE)
    to_uint8 = lambda frames: (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)  # noqa: E731
    driving = videos / "synthface_surprise.mp4"
    from lfdm.video import read_video

    driving_frames = read_video(driving)[::2][:16]
    animated = to_uint8(pipe.animate(picture, driving).frames[0])[::2][:16]
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    long = to_uint8(pipe(picture, "surprise", num_inference_steps=25, num_frames=48, generator=generator()).frames[0])
    rows = [("driving video", driving_frames), ("animated, relative", animated), ("48 frames (every 3rd)", long[::3])]
    for scale in (0.0, 1.0, 2.0):
        out_scaled = pipe(picture, "surprise", num_inference_steps=25, motion_scale=scale, generator=generator())
        rows.append((f"motion_scale {scale:g}", to_uint8(out_scaled.frames[0])[::3]))
    width = max(_row(name, frames).shape[1] for name, frames in rows)
    pictures = [_row(name, frames) for name, frames in rows]
    pictures = [np.pad(p, ((0, 2), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(pictures)).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=Path("assets/driving"), help="folder of the driving videos")
    parser.add_argument("--model", default="checkpoints", help="pipeline folder for --strip")
    parser.add_argument("--strip", type=Path, default=None, help="also write the picture here")
    args = parser.parse_args()
    if not (args.videos / f"synthface_{LABELS[0]}.mp4").is_file():
        for path in write_driving_videos(args.videos):
            print(path)
    if args.strip is not None:
        write_strip(args.model, args.videos, args.strip)
        print(args.strip)


if __name__ == "__main__":
    main()
