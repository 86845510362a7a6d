"""A real driving clip drives other portraits: the driving face found and framed in every frame, against the clip as
it is (issue 25's acceptance figures).

The clip is `assets/driving/astronaut_surprise_handheld.mp4` (`benchmarks/driving_examples.py`: the astronaut
animated to surprise by the model, filmed by a handheld camera that pans 5 %, zooms 10 % and shakes). The flows the
model generated for the astronaut's face are made again here (same model, seed and float32), and each picture's
flows, measured in its own aligned face crop, are compared with them:
- *correlation*: Pearson's r of the displacements (flow minus frame 0's, every frame, cell and axis);
- *drift*: the largest, over the frames, length of the displacement averaged over the whole crop (grid units; the
  crop is 2 wide): the camera's pan and zoom reaching the picture as a global motion;
- *energy*: the mean displacement length over the driving face's (`lfdm.evaluation.label_motion.magnitude`);
- *frame 0*: PSNR of the first frame at the picture's own size against the picture.
Three drivers per picture: the model's own aligned 64 px frames of the clip (the best one can do), the filmed clip
as it is (`driving_face="none"`), and the filmed clip with its face found and framed (`driving_face="auto"`).
Last, `benchmarks/motion_controls.py`'s SynthFace figures with the default `driving_face="auto"`.

    PYTHONPATH=. python benchmarks/driving_faces.py --model checkpoints --photos /tmp/ski/skimage/data/camera.png \
        --picture benchmarks/driving_faces_astronaut.jpg

`--photos` adds portraits (the cameraman of scikit-image's data folder: unzip `skimage/data/camera.png` from the
scikit-image 0.26.0 wheel; its small face is not found, so it is animated as a whole picture); a darker, grayscale,
mirrored astronaut is always used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.driving_examples import HANDHELD, PORTRAIT, handheld_clip
from benchmarks.motion_controls import driving as synthface_driving
from lfdm.evaluation.label_motion import displacement, magnitude
from lfdm.metrics import psnr
from lfdm.pipeline import load_pipeline
from lfdm.video import read_video

CLIP = Path("assets/driving") / f"{HANDHELD}.mp4"


def astronaut_variant() -> np.ndarray:
    """The astronaut mirrored, in grayscale and 30 % darker: another picture of a real face."""
    photo = np.asarray(Image.open(PORTRAIT).convert("RGB"))[:, ::-1]
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    return np.repeat((gray * 0.7).astype(np.uint8)[..., None], 3, axis=-1)


def motion_figures(flows: np.ndarray, reference: np.ndarray) -> dict:
    """flows, reference (F, h, w, 2) absolute grids -> correlation, drift and energy of `flows` against `reference`."""
    moved, expected = displacement(flows), displacement(reference)
    return {
        "correlation": float(np.corrcoef(moved[1:].ravel(), expected[1:].ravel())[0, 1]),
        "drift": float(np.linalg.norm(moved.mean(axis=(1, 2)), axis=-1).max()),
        "energy": magnitude(moved) / magnitude(expected),
    }


def frame0_db(frames: np.ndarray, photo: np.ndarray) -> float:
    as_images = lambda x: torch.from_numpy(np.asarray(x, np.float32)).permute(0, 3, 1, 2)  # noqa: E731
    return psnr(as_images(frames[:1]), as_images(photo[None] / 255)).item()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints", help="pipeline folder")
    parser.add_argument("--photos", nargs="*", type=Path, default=[], help="more portraits to drive")
    parser.add_argument("--skip-synthface", action="store_true", help="leave out the SynthFace regression figures")
    parser.add_argument("--picture", type=Path, help="draw the clip and the first portrait it drives, side by side")
    args = parser.parse_args()
    pipe = load_pipeline(args.model, device="cpu", dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    clip = read_video(CLIP)
    _, reference, model_frames = handheld_clip(pipe)
    print(f"clip {CLIP}: {clip.shape}; the driving face's own motion: {magnitude(displacement(reference)):.4f}")
    pictures = {"astronaut, mirrored, grayscale, darker": astronaut_variant()}
    for path in args.photos:
        pictures[path.stem] = np.asarray(Image.open(path).convert("RGB"))
    drivers = {
        "model's own aligned frames": (model_frames, "none"),
        "filmed clip as it is": (clip, "none"),
        "filmed clip, face framed": (clip, "auto"),
    }
    print("| picture | driver | correlation | drift | energy | frame 0 dB | output | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, photo in pictures.items():
        for driver, (frames, driving_face) in drivers.items():
            start = time.perf_counter()
            out = pipe.animate(photo, frames, driving_face=driving_face, resolution="input")
            seconds = time.perf_counter() - start
            figures = motion_figures(out.flows[0], reference)
            size = "x".join(map(str, out.frames.shape[2:4]))
            print(f"| {name} | {driver} | {figures['correlation']:.2f} | {figures['drift']:.4f} | "
                  f"{figures['energy']:.2f}x | {frame0_db(out.frames[0], photo):.1f} | {size} | {seconds:.1f} |",
                  flush=True)  # fmt: skip
            if out.driving_note:
                print(f"|  |  note: {out.driving_note} |  |  |  |  |  |  |")
    if args.picture:
        name, photo = next(iter(pictures.items()))
        out = pipe.animate(photo, clip, driving_face="auto", resolution="input")
        side_by_side(clip, out.frames[0], out.face_box).save(args.picture, quality=90)
        print(f"wrote {args.picture}: the clip beside {name}")
    if not args.skip_synthface:
        tally = {"framed like the model's": 0, "aligned": 0, "no face: driving_face='none'": 0}
        record = synthface_driving(_AutoOrNone(pipe, tally))
        print("SynthFace, driving_face='auto' (clips:", tally, "):", {key: {k: round(v, 2) for k, v in value.items()}
                                                                    for key, value in record.items()})  # fmt: skip


def side_by_side(clip: np.ndarray, frames: np.ndarray, face_box, columns=(0, 5, 10, 15)) -> Image.Image:
    """Rows: the driving clip's frames, and the driven portrait's face (its box with a margin; None: the whole
    picture) at full resolution, for the frames `columns`. clip (F, H, W, 3) uint8; frames (F, H', W', 3) float in
    [0, 1]."""
    x0, y0, x1, y1 = face_box or (0, 0, frames.shape[2], frames.shape[1])  # no face: the whole picture
    margin = (y1 - y0) // 3
    top, bottom = max(0, y0 - margin), min(frames.shape[1], y1 + margin)
    left, right = max(0, x0 - margin), min(frames.shape[2], x1 + margin)
    faces = (np.clip(frames[:, top:bottom, left:right], 0, 1) * 255).round().astype(np.uint8)
    columns = [min(index, len(frames) - 1) for index in columns]
    width = max(clip.shape[2], faces.shape[2])
    caption, gap = 18, 4
    sheet = Image.new("RGB", (len(columns) * (width + gap), clip.shape[1] + faces.shape[1] + 2 * caption), "white")
    draw = ImageDraw.Draw(sheet)
    for column, index in enumerate(columns):
        x = column * (width + gap)
        draw.text((x + 4, 3), f"driving clip, frame {index}", fill=(20, 20, 20))
        sheet.paste(Image.fromarray(clip[index]), (x, caption))
        draw.text((x + 4, clip.shape[1] + caption + 3), f"driven portrait, frame {index}", fill=(20, 20, 20))
        sheet.paste(Image.fromarray(faces[index]), (x, clip.shape[1] + 2 * caption))
    return sheet


class _AutoOrNone:
    """`pipe` whose `animate` finds the driving face, and uses the frames as they are where none is found (a
    SynthFace cartoon the face cascade misses in every frame); `tally` counts which."""

    def __init__(self, pipe, tally: dict):
        self.pipe, self.tally = pipe, tally

    def animate(self, *args, **kwargs):
        try:
            out = self.pipe.animate(*args, **kwargs)
        except ValueError:
            self.tally["no face: driving_face='none'"] += 1
            return self.pipe.animate(*args, driving_face="none", **kwargs)
        self.tally["framed like the model's" if "already" in out.driving_note else "aligned"] += 1
        return out


if __name__ == "__main__":
    main()
