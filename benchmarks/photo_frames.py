"""Photographic frames: how sharp a photo's video stays, per photo and label, beside its motion.

For every photo (and its variants: mirrored, turned, grayscale, a small JPEG, in a larger canvas, darker and warmer
light, overcast light, with drawn glasses) and every label, the photo-size video (`resolution="input"`) is measured:
- sharpness ratios (`lfdm.evaluation.sharpness`) of the face box and of its eye and mouth bands at frames 5, 10
  and 15 (the last frame when the video is shorter): 1 = as sharp as the photo;
- frame 0 against the photo (PSNR, dB) and the largest change of pixels far from the face (1/255 units);
- the label match and motion energy of `benchmarks/real_faces.py` (flows against SynthFace's typical flows).

    PYTHONPATH=. python benchmarks/photo_frames.py --model checkpoints \
        --photos assets/examples/astronaut.png <scikit-image wheel>/skimage/data/astronaut.png \
        --json benchmarks/photo_frames.json --strips benchmarks/photo_frames_astronaut.jpg

`--strips` draws the first photo's face, zoomed to full resolution, at frames 0 / 5 / 10 / 15 for surprise,
happiness and fear (one row each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from lfdm import faces
from lfdm.evaluation.label_motion import score_motion
from lfdm.evaluation.sharpness import far_change, sharpness_ratios
from lfdm.metrics import psnr
from lfdm.pipeline import load_pipeline
from lfdm.schedulers import make_scheduler

try:  # run as a script from the repository root (PYTHONPATH=.) or as a module
    from benchmarks.real_faces import EXAMPLES, reference_motion, variants
except ImportError:  # pragma: no cover
    from real_faces import EXAMPLES, reference_motion, variants

STRIP_LABELS = ("surprise", "happiness", "fear")
STRIP_FRAMES = (0, 5, 10, 15)


def more_variants(photo: np.ndarray) -> dict[str, np.ndarray]:
    """The photo in other light (darker and warmer, as under tungsten; brighter with less contrast, as overcast) and
    with glasses: dark rims drawn round the eyes that `lfdm.faces` finds, and a bridge."""
    pixels = photo.astype(np.float32) / 255
    warm = np.clip((pixels**1.3) * np.array([1.05, 0.85, 0.62]), 0, 1)
    flat = np.clip(0.25 + 0.7 * pixels, 0, 1)
    to_uint8 = lambda image: (image * 255).round().astype(np.uint8)
    variants = {"darker, warm light": to_uint8(warm), "overcast, low contrast": to_uint8(flat)}
    found = faces.detect_faces(photo)
    if found:
        glasses = photo.copy()
        (left_x, left_y), (right_x, right_y) = found[0].eyes
        spacing = float(np.hypot(right_x - left_x, right_y - left_y))
        axes = (round(0.36 * spacing), round(0.24 * spacing))
        thickness = max(2, round(0.05 * spacing))
        for x, y in ((left_x, left_y), (right_x, right_y)):
            cv2.ellipse(glasses, (round(x), round(y)), axes, 0, 0, 360, (30, 25, 25), thickness, cv2.LINE_AA)
        bridge = ((round(left_x + axes[0]), round(left_y)), (round(right_x - axes[0]), round(right_y)))
        cv2.line(glasses, *bridge, (30, 25, 25), thickness, cv2.LINE_AA)
        variants["drawn glasses"] = glasses
    return variants


def measure(pipe, image: np.ndarray, seed: int, steps: int | None, frames: tuple[int, ...]) -> tuple[dict, object]:
    """Every label's photo-size video of `image`: label -> figures, and the pipeline's output."""
    generators = [torch.Generator().manual_seed(seed) for _ in pipe.labels]
    output = pipe(image, pipe.labels, num_inference_steps=steps, generator=generators, resolution="input")
    if output.face_box is None:
        raise ValueError("no face was found; the sharpness of a face needs one")
    video = np.clip(output.frames, 0, 1)  # (L, F, H, W, 3)
    box = output.face_box
    if video.shape[2:4] != image.shape[:2]:  # a photo over the size cap comes back shrunk (area-averaged)
        ratio = video.shape[2] / image.shape[0]
        box = tuple(round(value * ratio) for value in box)
        image = cv2.resize(image, video.shape[3:1:-1], interpolation=cv2.INTER_AREA)
    photo = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    at = tuple(min(frame, video.shape[1] - 1) for frame in frames)
    figures = {}
    for index, label in enumerate(pipe.labels):
        first = torch.from_numpy(video[index, 0]).permute(2, 0, 1)[None].float()
        figures[label] = {
            "sharpness": sharpness_ratios(video[index], box, at),
            "frame0_psnr": float(psnr(first, photo)),
            "far_change": far_change(video[index], box),
        }
    return figures, output


def strips(pipe, photo: np.ndarray, seed: int, steps: int | None, zoom_to: int = 256) -> Image.Image:
    """The face of `photo` (its box with a margin, at least `zoom_to` px tall, nearest-neighbour zoom so every pixel
    shows) at frames 0 / 5 / 10 / 15 for surprise, happiness and fear."""
    labels = [label for label in STRIP_LABELS if label in pipe.labels]
    generators = [torch.Generator().manual_seed(seed) for _ in labels]
    output = pipe(photo, labels, num_inference_steps=steps, generator=generators, resolution="input")
    video = (np.clip(output.frames, 0, 1) * 255).round().astype(np.uint8)
    x0, y0, x1, y1 = output.face_box
    margin = (y1 - y0) // 5
    top, bottom = max(0, y0 - margin), min(video.shape[2], y1 + margin)
    left, right = max(0, x0 - margin), min(video.shape[3], x1 + margin)
    zoom = max(1, int(np.ceil(zoom_to / (bottom - top))))
    tile_h, tile_w = (bottom - top) * zoom, (right - left) * zoom
    caption, gap = 20, 4
    columns = [min(frame, video.shape[1] - 1) for frame in STRIP_FRAMES]
    sheet = Image.new("RGB", (len(columns) * (tile_w + gap), len(labels) * (tile_h + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, label in enumerate(labels):
        for column, frame in enumerate(columns):
            crop = video[row, frame, top:bottom, left:right]
            crop = cv2.resize(crop, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
            x, y = column * (tile_w + gap), row * (tile_h + caption)
            draw.text((x + 4, y + 4), f"{label}, frame {frame}", fill=(20, 20, 20))
            sheet.paste(Image.fromarray(crop), (x, y + caption))
    return sheet


def summary(rows: list[dict]) -> dict:
    """The face ratio averaged over rows, labels and frames; the worst video's face and band ratios (averaged over
    frames); the highest single ratio; frame 0, the far pixels and the motion over all rows."""
    face, bands, most = [], [], []
    for row in rows:
        for figures in row["labels"].values():
            ratios = figures["sharpness"]
            face.append(np.mean(ratios["face"]))
            bands += [np.mean(ratios["eyes"]), np.mean(ratios["mouth"])]
            most.append(max(max(values) for values in ratios.values()))
    return {
        "face_mean": float(np.mean(face)),
        "face_worst_label": float(np.min(face)),
        "bands_worst": float(np.min(bands)),
        "highest_ratio": float(np.max(most)),
        "frame0_psnr_min": float(min(f["frame0_psnr"] for row in rows for f in row["labels"].values())),
        "far_change_max": float(max(f["far_change"] for row in rows for f in row["labels"].values())),
        "matches": f"{sum(row['matches'] for row in rows)}/{sum(len(row['labels']) for row in rows)}",
        "energy_mean": float(np.mean([row["energy"] for row in rows])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints")
    parser.add_argument("--photos", nargs="+", default=[str(EXAMPLES / "astronaut.png")])
    parser.add_argument("--variants", nargs="*", default=None, help="names to keep (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="DPM-Solver++ steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-seeds", type=int, nargs="+", default=[0, 1], help="seeds on SynthFace faces")
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 15])
    parser.add_argument("--json", default=None)
    parser.add_argument("--strips", default=None, help="picture of the first photo's face at frames 0/5/10/15")
    args = parser.parse_args()

    pipe = load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    if args.steps is not None:
        pipe.scheduler = make_scheduler("dpmsolver", base_config=pipe.scheduler.config)
    began = time.perf_counter()
    reference = reference_motion(pipe, args.reference_seeds, args.steps)
    rows = []
    for photo_path in args.photos:
        photo = np.asarray(Image.open(photo_path).convert("RGB"))
        for name, image in {**variants(photo), **more_variants(photo)}.items():
            if args.variants is not None and name not in args.variants:
                continue
            figures, output = measure(pipe, image, args.seed, args.steps, tuple(args.frames))
            flows = {label: output.flows[index][None] for index, label in enumerate(pipe.labels)}
            score = score_motion(reference, flows)
            row = {"photo": Path(photo_path).name, "variant": name, "size": list(image.shape[:2]),
                   "face_box": output.face_box, "matches": score.num_matches, "energy": score.mean_energy,
                   "labels": figures}  # fmt: skip
            rows.append(row)
            for label, label_figures in figures.items():
                ratios = label_figures["sharpness"]
                text = "  ".join(f"{band} " + "/".join(f"{value:.2f}" for value in ratios[band]) for band in ratios)
                matched = "match" if score.matches[label] else "miss "
                print(f"{row['photo']:16s} {name:34s} {label:10s} {text}  frame0 {label_figures['frame0_psnr']:.1f} "
                      f"dB  far {label_figures['far_change']:.2f}  {matched}", flush=True)  # fmt: skip
            print(f"{'':16s} {name:34s} {score.num_matches}/{len(score.labels)} labels match, "
                  f"energy {score.mean_energy:.2f}x", flush=True)  # fmt: skip
            if args.json:
                _write(args, rows, time.perf_counter() - began)
    print(json.dumps(summary(rows), indent=2))
    if args.json:
        _write(args, rows, time.perf_counter() - began)
    if args.strips:
        photo = np.asarray(Image.open(args.photos[0]).convert("RGB"))
        strips(pipe, photo, args.seed, args.steps).save(args.strips, quality=92)


def _write(args, rows: list[dict], seconds: float) -> None:
    record = {
        "command": "python benchmarks/photo_frames.py " + " ".join(f"{k}={v}" for k, v in vars(args).items()),
        "seconds": seconds,
        "summary": summary(rows),
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
