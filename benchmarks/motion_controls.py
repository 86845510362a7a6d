"""Figures of the three motion controls on the shipped pipeline (what `benchmarks/RESULTS.md` records).

1. Driving videos: SynthFace test videos (identities 2-6, three labels, 16 frames) driving their own frame 0, PSNR
   over all frames against the video, relative and absolute; and driving another identity's neutral face: frame-0
   PSNR against that face, and how far the last frame moved (mean absolute change, [0, 1] pixels).
2. Longer videos: 48 frames (chained 16-frame clips) from the example pictures: the largest frame-to-frame change
   where clips meet (into a later clip's first frame and on to its second), as a multiple of the median change.
3. Motion strength: the motion the frames show at motion_scale 0, 1 and 2 (the LFAE's flow from frame 0 to each
   frame, mean displacement), and the ratio (2 - 0) / (1 - 0).

    PYTHONPATH=. python benchmarks/motion_controls.py --model checkpoints --steps 25 --out motion.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lfdm.data.synthface import render_video, split_identities
from lfdm.flow_edits import displacement, new_frames_per_clip, num_clips
from lfdm.metrics import psnr
from lfdm.pipeline import load_pipeline

EXAMPLES = ("synthface_test_8388608.png", "synthface_test_8388616.png")
LABELS = ("surprise", "happiness", "disgust")


def images(frames) -> torch.Tensor:
    frames = torch.as_tensor(np.asarray(frames))
    return (frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()).permute(0, 3, 1, 2)


@torch.no_grad()
def driving(pipe) -> dict:
    identities = split_identities("test", 7)[2:7]
    record = {"self_relative_db": [], "self_absolute_db": [], "other_frame0_db": [], "other_last_change": []}
    for index, identity in enumerate(identities):
        other = render_video(identities[(index + 1) % len(identities)], "neutral", 0, resolution=64, num_frames=2)[0]
        for label in LABELS:
            clip = render_video(identity, label, 0, resolution=64, num_frames=16)
            for relative, key in ((True, "self_relative_db"), (False, "self_absolute_db")):
                out = pipe.animate(clip[0], clip, relative=relative)
                record[key].append(psnr(images(out.frames[0]), images(clip)).mean().item())
            out = pipe.animate(other, clip)
            record["other_frame0_db"].append(psnr(images(out.frames[0, :1]), images(other[None])).item())
            record["other_last_change"].append(float(np.abs(out.frames[0, -1] - out.frames[0, 0]).mean()))
    return {key: {"mean": float(np.mean(values)), "min": float(np.min(values))} for key, values in record.items()}


@torch.no_grad()
def longer(pipe, steps: int) -> list[dict]:
    rows = []
    clip = pipe.num_frames  # a later clip's frames begin at clip + k * new_frames_per_clip(clip)
    firsts = [clip + k * new_frames_per_clip(clip) for k in range(num_clips(48, clip) - 1)]
    seams = [i for first in firsts for i in (first - 1, first) if i < 47]
    for example, label in zip(EXAMPLES, LABELS, strict=False):  # 6 clips of 25 steps each: minutes per video
        generator = torch.Generator().manual_seed(0)
        image = Image.open(Path("assets/examples") / example)
        frames = pipe(image, label, num_inference_steps=steps, num_frames=48, generator=generator).frames[0]
        change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        median = np.median(change)
        rows.append({"example": example, "label": label, "seam_over_median": float(change[seams].max() / median),
                     "max_over_median": float(change.max() / median)})  # fmt: skip
    return rows


@torch.no_grad()
def strength(pipe, steps: int) -> list[dict]:
    rows = []
    for example in EXAMPLES:
        for label in LABELS[:2]:
            seen = {}
            for scale in (0.0, 1.0, 2.0):
                generator = torch.Generator().manual_seed(0)
                out = pipe(Image.open(Path("assets/examples") / example), label, num_inference_steps=steps,
                           motion_scale=scale, generator=generator, output_type="pt")  # fmt: skip
                frames = out.frames[0].permute(0, 3, 1, 2)
                estimate = pipe.lfae.estimate_flow(frames[:1].expand(len(frames), -1, -1, -1), frames)
                seen[scale] = displacement(estimate.flow).norm(dim=-1).mean().item()
                if scale == 0.0:
                    still = float((frames - frames[:1]).abs().max() * 255)
            ratio = (seen[2.0] - seen[0.0]) / (seen[1.0] - seen[0.0])
            rows.append({"example": example, "label": label, "shown_motion": seen, "ratio_2_to_1": ratio,
                         "still_max_change_255": still})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="JSON file; with --parts, the other parts are kept")
    parser.add_argument("--parts", default="driving,longer,strength", help="which measurements to (re)run")
    args = parser.parse_args()
    pipe = load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    record = json.loads(args.out.read_text()) if args.out is not None and args.out.is_file() else {}
    record["steps"] = args.steps
    parts = {"driving": lambda: driving(pipe), "longer": lambda: longer(pipe, args.steps),
             "strength": lambda: strength(pipe, args.steps)}  # fmt: skip
    for name in args.parts.split(","):
        record[name] = parts[name]()
    text = json.dumps(record, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
