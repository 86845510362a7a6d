"""Label motion on real faces: the whole picture (before) against the face found and aligned (after).

For every label, the generated displacement (flow minus frame 0's) is compared with the label's mean displacement
on the SynthFace example faces (`lfdm.evaluation.label_motion`): a label *matches* when its own mean is the most similar
(cosine), and *energy* is its mean displacement magnitude relative to SynthFace's. The real faces are a portrait
and its variants: mirrored, turned 12 degrees, grayscale, a small JPEG and mirrored in a larger canvas.

    PYTHONPATH=. python benchmarks/real_faces.py --model checkpoints --photos assets/examples/astronaut.png \
        --json benchmarks/real_faces.json --picture benchmarks/real_faces_astronaut.jpg

`--picture` also draws the first photo, every label, frames 0 / middle / last of the photo-size video (`after`).
`--synthface N` also scores N unseen SynthFace faces as they are, with a photographic look and smiling (frame 8 of
a happiness video), the model's own domain for comparison.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from lfdm.evaluation.label_motion import LabelMotion, score_motion
from lfdm.pipeline import load_pipeline
from lfdm.schedulers import make_scheduler

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def variants(photo: np.ndarray) -> dict[str, np.ndarray]:
    """The portrait and the kinds of photos people upload: name -> uint8 (H, W, 3)."""
    height, width = photo.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 12, 1.0)
    small = cv2.resize(photo, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="JPEG", quality=30)
    canvas = np.full((2 * height, 3 * width, 3), (90, 110, 130), np.uint8)
    canvas[height // 2 : height // 2 + height, 3 * width // 2 : 3 * width // 2 + width] = photo[:, ::-1]
    return {
        "as is": photo,
        "mirrored": np.ascontiguousarray(photo[:, ::-1]),
        "turned 12 degrees": cv2.warpAffine(photo, turn, (width, height), borderMode=cv2.BORDER_REFLECT),
        "grayscale": np.repeat(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1),
        "small JPEG (half size, quality 30)": np.asarray(Image.open(buffer).convert("RGB")),
        "mirrored in a larger canvas": canvas,
    }


def synthface_inputs(count: int) -> dict[str, np.ndarray]:
    """First frames of `count` unseen SynthFace test identities, from the fifth on (none of them an example face of
    `assets/examples/`, the references): flat, with a photographic look, and frame 8 of a happiness video (a
    smiling face, as in many photos)."""
    from lfdm.data.synthface.appearance import sample_appearance
    from lfdm.data.synthface.dataset import split_identities
    from lfdm.data.synthface.render import render_frames

    inputs = {}
    examples = {int(path.stem.rsplit("_", 1)[1]) for path in EXAMPLES.glob("synthface_test_*.png")}
    identities = [
        identity for identity in split_identities("test", 4 + count + len(examples))[4:] if identity not in examples
    ]
    for index, identity in enumerate(identities[:count]):
        look = sample_appearance(np.random.default_rng([index, 0x5F]))
        options = {"resolution": 64, "num_frames": 16}
        inputs[f"{identity} flat"] = render_frames(identity, "neutral", 0, [0], **options)[0]
        inputs[f"{identity} photographic look"] = render_frames(
            identity, "neutral", 0, [0], appearance=look, **options
        )[0]
        inputs[f"{identity} smiling (happiness, frame 8)"] = render_frames(identity, "happiness", 0, [8], **options)[0]
    return inputs


def generate_flows(pipe, image, seeds, steps, face) -> tuple[dict[str, np.ndarray], object]:
    """label -> flows (len(seeds), F, h, w, 2) of every label, and the last output."""
    flows = {label: [] for label in pipe.labels}
    output = None
    for seed in seeds:
        generators = [torch.Generator().manual_seed(seed) for _ in pipe.labels]
        output = pipe(image, pipe.labels, num_inference_steps=steps, generator=generators, face=face)
        for label, flow in zip(pipe.labels, output.flows, strict=True):
            flows[label].append(flow)
    return {label: np.stack(videos) for label, videos in flows.items()}, output


def reference_motion(pipe, seeds, steps) -> LabelMotion:
    videos = {label: [] for label in pipe.labels}
    for path in sorted(EXAMPLES.glob("synthface_*.png")):
        flows, _ = generate_flows(pipe, Image.open(path), seeds, steps, face="none")
        for label, label_flows in flows.items():
            videos[label] += list(label_flows)
    return LabelMotion.from_videos(videos)


def picture(pipe, photo: np.ndarray, steps: int, seed: int) -> Image.Image:
    """Every label (rows) at frames 0, middle and last (columns) of the photo-size video, with captions."""
    generators = [torch.Generator().manual_seed(seed) for _ in pipe.labels]
    output = pipe(photo, pipe.labels, num_inference_steps=steps, generator=generators, resolution="input")
    frames = (np.clip(output.frames, 0, 1) * 255).round().astype(np.uint8)  # (L, F, H, W, 3)
    count, height, width = frames.shape[1:4]
    columns = (0, count // 2, count - 1)
    caption, gap = 24, 4
    sheet = Image.new("RGB", (3 * width + 2 * gap, len(pipe.labels) * (height + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, label in enumerate(pipe.labels):
        top = row * (height + caption)
        for column, frame in enumerate(columns):
            left = column * (width + gap)
            draw.text((left + 4, top + 6), f"{label}, frame {frame}", fill=(20, 20, 20))
            sheet.paste(Image.fromarray(frames[row, frame]), (left, top + caption))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints")
    parser.add_argument("--photos", nargs="*", default=[str(EXAMPLES / "astronaut.png")], help="none: SynthFace only")
    parser.add_argument("--steps", type=int, default=25, help="DPM-Solver++ steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the videos of the photos")
    parser.add_argument("--reference-seeds", type=int, nargs="+", default=[0, 1], help="seeds on SynthFace faces")
    parser.add_argument(
        "--synthface",
        type=int,
        default=0,
        help="also score this many unseen SynthFace faces (flat, photographic, smiling)",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--picture", default=None)
    args = parser.parse_args()

    pipe = load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("dpmsolver", base_config=pipe.scheduler.config)
    began = time.perf_counter()
    reference = reference_motion(pipe, args.reference_seeds, args.steps)
    rows = []
    for photo_path in args.photos:
        photo = np.asarray(Image.open(photo_path).convert("RGB"))
        for name, image in variants(photo).items():
            for mode, face in (("before", "none"), ("after", "auto")):
                flows, output = generate_flows(pipe, image, args.seeds, args.steps, face)
                score = score_motion(reference, flows)
                rows.append({
                    "photo": Path(photo_path).name, "variant": name, "mode": mode, "size": list(image.shape[:2]),
                    "face_box": output.face_box, "face_note": output.face_note, "matches": score.num_matches,
                    "matched": score.matches, "energy": score.mean_energy, "energy_by_label": score.energy,
                    "similarity": score.similarity.round(3).tolist(),
                })  # fmt: skip
                print(f"{Path(photo_path).name:16s} {name:36s} {mode:6s} {score.num_matches}/{len(score.labels)} "
                      f"energy {score.mean_energy:.2f}x face {output.face_box}", flush=True)  # fmt: skip
                if args.json:  # after every row: a run stopped early keeps what it measured
                    _write(args, reference, rows, time.perf_counter() - began)
    for name, image in synthface_inputs(args.synthface).items():
        flows, _ = generate_flows(pipe, image, args.seeds, args.steps, "none")
        score = score_motion(reference, flows)
        rows.append({
            "photo": "synthface", "variant": name, "mode": "model size", "matches": score.num_matches,
            "matched": score.matches, "energy": score.mean_energy, "similarity": score.similarity.round(3).tolist(),
        })  # fmt: skip
        print(f"synthface        {name:36s}        {score.num_matches}/{len(score.labels)} "
              f"energy {score.mean_energy:.2f}x", flush=True)  # fmt: skip
        if args.json:
            _write(args, reference, rows, time.perf_counter() - began)
    if args.photos:
        _print_table([row for row in rows if row["photo"] != "synthface"], len(reference.labels))
    if args.picture and args.photos:
        photo = np.asarray(Image.open(args.photos[0]).convert("RGB"))
        picture(pipe, photo, args.steps, args.seeds[0]).save(args.picture, quality=90)


def _write(args, reference: LabelMotion, rows: list[dict], seconds: float) -> None:
    record = {
        "command": "python benchmarks/real_faces.py " + " ".join(f"{k}={v}" for k, v in vars(args).items()),
        "labels": reference.labels,
        "reference_energy": reference.energy,
        "seconds": seconds,
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")


def _print_table(rows, num_labels: int) -> None:
    print("| photo | variant | whole picture: matches | energy | face aligned: matches | energy | face box |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for before, after in zip(rows[::2], rows[1::2], strict=True):
        print(f"| {before['photo']} | {before['variant']} | {before['matches']}/{num_labels} | "
              f"{before['energy']:.2f}x | {after['matches']}/{num_labels} | {after['energy']:.2f}x | "
              f"{after['face_box']} |")  # fmt: skip
    for mode in ("before", "after"):
        chosen = [row for row in rows if row["mode"] == mode]
        print(f"{mode}: {sum(row['matches'] for row in chosen)}/{num_labels * len(chosen)} labels match, "
              f"energy {np.mean([row['energy'] for row in chosen]):.2f}x on average")  # fmt: skip


if __name__ == "__main__":
    main()
