"""The app's example driving videos and the README picture of the three motion controls.

Driving videos, written as H.264 to `assets/driving/` with a thumbnail each (`<clip>.png`, its middle frame) and
listed, with a name that says what each shows, in `assets/driving/clips.json` (what the app reads):
- SynthFace test videos (an identity none of the example pictures shows), rendered by `lfdm.data.synthface` at the
  shipped model's 64 px;
- a real face filmed by a handheld camera: the astronaut portrait (`assets/examples/astronaut.png`, public domain)
  animated by the model (surprise, at the portrait's own 320 px, seed 0), then filmed by a camera that pans 5 % of
  the frame, zooms in 10 % and shakes a little (`lfdm.testing.film_with_moving_camera`), at 256 px.

The picture (`assets/motion_controls.png`), one row each: a driving video; an example face animated by it
(relative motion); a 48-frame video chained from 16-frame clips (every 3rd frame); the same 16-frame video at
motion_scale 0, 1 and 2 (every 3rd frame).

    PYTHONPATH=. python benchmarks/driving_examples.py --videos assets/driving --model checkpoints
    PYTHONPATH=. python benchmarks/driving_examples.py --model checkpoints --strip assets/motion_controls.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lfdm.data.synthface.dataset import split_identities
from lfdm.data.synthface.render import render_video
from lfdm.testing import film_with_moving_camera
from lfdm.video import write_video

IDENTITY = 2  # the third SynthFace test identity (8388610); the app's example pictures are 0, 1, 8 and 11
LABELS = ("surprise", "happiness", "disgust")
FRAMES, FPS, RESOLUTION = 32, 8, 64
EXAMPLE_PICTURE = Path("assets/examples/synthface_test_8388608.png")
TILE = 64
PORTRAIT = Path("assets/examples/astronaut.png")
HANDHELD = "astronaut_surprise_handheld"  # the real clip's file name, without .mp4
HANDHELD_LABEL, HANDHELD_SEED, HANDHELD_SIZE = "surprise", 0, 256
NAMES = {  # clip -> what it shows
    **{f"synthface_{label}": f"{label}, SynthFace cartoon face, still camera" for label in LABELS},
    HANDHELD: f"{HANDHELD_LABEL}, real face (astronaut portrait), handheld camera",
}


def write_driving_videos(folder: Path) -> list[Path]:
    identity = split_identities("test", IDENTITY + 1)[IDENTITY]
    return [
        write_video(folder / f"synthface_{label}.mp4", render_video(identity, label, 0, resolution=RESOLUTION,
                                                                     num_frames=FRAMES), FPS)
        for label in LABELS
    ]  # fmt: skip


@torch.no_grad()
def handheld_clip(pipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The astronaut animated by `pipe` and filmed by a handheld camera: uint8 (F, 256, 256, 3) the clip, the flows
    (F, h, w, 2) the model generated for the portrait's face (in its aligned crop), and uint8 (F, S, S, 3) the
    model's own frames of that crop."""
    generator = torch.Generator().manual_seed(HANDHELD_SEED)
    out = pipe(Image.open(PORTRAIT), HANDHELD_LABEL, resolution="input", generator=generator)
    frames = (np.clip(out.frames[0], 0, 1) * 255).round().astype(np.uint8)
    clip, _ = film_with_moving_camera(frames, HANDHELD_SIZE)
    model_frames = (np.clip(out.model_frames[0], 0, 1) * 255).round().astype(np.uint8)
    return clip, out.flows[0], model_frames


def write_handheld_clip(model: str, folder: Path) -> Path:
    from lfdm.pipeline import load_pipeline

    pipe = load_pipeline(model, device="cpu", dtype="float32")  # float32 everywhere: the same clip on any CPU
    pipe.set_progress_bar_config(disable=True)
    clip, _, _ = handheld_clip(pipe)
    return write_video(folder / f"{HANDHELD}.mp4", clip, FPS)


def write_catalogue(folder: Path) -> Path:
    """A thumbnail (the middle frame, PNG) beside every clip, and `clips.json`: file, name and thumbnail of each."""
    from lfdm.video import read_video

    clips = []
    for stem, name in NAMES.items():
        path = folder / f"{stem}.mp4"
        if not path.is_file():
            continue
        frames = read_video(path)
        Image.fromarray(frames[len(frames) // 2]).save(folder / f"{stem}.png", optimize=True)
        clips.append({"file": path.name, "name": name, "thumbnail": f"{stem}.png"})
    out = folder / "clips.json"
    out.write_text(json.dumps(clips, indent=2) + "\n")
    return out


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
    parser.add_argument("--model", default="checkpoints", help="pipeline folder (the handheld clip, --strip)")
    parser.add_argument("--strip", type=Path, default=None, help="also write the picture here")
    args = parser.parse_args()
    if not (args.videos / f"synthface_{LABELS[0]}.mp4").is_file():
        for path in write_driving_videos(args.videos):
            print(path)
    if not (args.videos / f"{HANDHELD}.mp4").is_file():
        print(write_handheld_clip(args.model, args.videos))
    print(write_catalogue(args.videos))
    if args.strip is not None:
        write_strip(args.model, args.videos, args.strip)
        print(args.strip)


if __name__ == "__main__":
    main()
