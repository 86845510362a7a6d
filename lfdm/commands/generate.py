"""`python -m lfdm generate`: one image and action labels -> a folder of videos per label.

    python -m lfdm generate --model checkpoints --image face.png --label happiness --label surprise \
        --seed 0 --face auto --resolution input --out outputs \
        [--steps 25] [--scheduler dpmsolver] [--frames 48] [--motion-scale 1.5]

samples with the model's own sampler and its measured default steps unless `--scheduler` / `--steps` say otherwise
(`python -m lfdm choose-default` measures and saves that default), finds the face in the picture (`--face auto`;
`none` animates the whole picture, `require` stops when there is no face) and writes, for each label,
`<out>/<label-slug>/`:
- `video.mp4`  the generated video (H.264) at the photo's size (`--resolution input`, long side at most
  `--max-resolution`), the face pasted back into the photo; `--resolution model` gives the model's own frames;
- `panels.mp4` the model's view: input (the face crop) | generated | warped input | flow colours | warped grid |
  occlusion, side by side;
- `video.gif`  with `--gif`;
- `flows.npz`  `flows` (F, h, w, 2) absolute sampling grids, `occlusions` (F, h, w) in [0, 1], `labels` (1,).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lfdm.commands.options import add_device_arguments, add_photo_arguments

SCHEDULERS = ("ddpm", "ddim", "dpmsolver", "unipc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="pipeline folder (save_pretrained) or Hugging Face repo id")
    parser.add_argument("--image", required=True, help="the picture to animate (PNG, JPEG, ...; any size)")
    parser.add_argument(
        "--label", action="append", default=None, help="action label; repeat for several (default: every label)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the model's measured count for the sampler)"
    )
    parser.add_argument(
        "--scheduler", choices=SCHEDULERS, default=None, help="sampler (default: the model's own; ddpm = the paper's)"
    )
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance; 1.0 = none")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same video")
    parser.add_argument("--out", default="outputs", help="output folder; one sub-folder per label")
    parser.add_argument("--gif", action="store_true", help="also write video.gif")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of the written videos")
    add_device_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="labels sampled together in one batch")
    parser.add_argument("--panel-size", type=int, default=128, help="tile height of panels.mp4, pixels")
    parser.add_argument(
        "--frames", type=int, default=None, help="video length (default: the model's clip); longer = chained clips"
    )
    parser.add_argument("--motion-scale", type=float, default=1.0, help="0 = still, 1 = the model's motion, 2 = twice")
    add_photo_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1; got {args.steps}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}.")
    if not args.fps > 0:
        raise ValueError(f"--fps must be positive; got {args.fps}.")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1; got {args.frames}.")

    import torch

    from lfdm.flow_edits import check_motion_scale
    from lfdm.images import load_image
    from lfdm.outputs import label_slug, write_label_outputs
    from lfdm.photo import check_photo_options
    from lfdm.pipeline import load_pipeline
    from lfdm.schedulers import make_scheduler

    check_motion_scale(args.motion_scale)
    check_photo_options(args.face, args.resolution, args.max_resolution)
    image = load_image(args.image)  # fail on a bad image before the model loads
    pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype)
    labels = list(dict.fromkeys(args.label or pipe.labels))  # keep order, drop repeats
    unknown = [label for label in labels if label not in pipe.labels]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; this model knows: {', '.join(pipe.labels)}.")
    if args.scheduler is not None:
        pipe.scheduler = make_scheduler(args.scheduler, base_config=pipe.scheduler.config)
    print(f"sampling with {type(pipe.scheduler).__name__}, {args.steps or pipe.default_num_inference_steps} steps")

    out = Path(args.out)
    for start in range(0, len(labels), args.batch_size):
        batch = labels[start : start + args.batch_size]
        # One generator per label: a label's video depends on the seed only, not on the other labels asked for.
        generators = [torch.Generator().manual_seed(args.seed) for _ in batch]
        result = pipe(
            image, batch, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=generators,
            num_frames=args.frames, motion_scale=args.motion_scale,
            face=args.face, resolution=args.resolution, max_resolution=args.max_resolution,
        )  # fmt: skip
        if start == 0:
            print(_face_report(result))
        for index, label in enumerate(batch):
            folder = out / label_slug(label)
            written = write_label_outputs(
                folder,
                label,
                result.model_input,
                result.frames[index],
                result.warped[index],
                result.flows[index],
                result.occlusions[index],
                fps=args.fps,
                gif=args.gif,
                panel_size=args.panel_size,
                model_frames=result.model_frames[index],
            )
            print(f"{label}: " + ", ".join(str(path) for path in written))
    return 0


def _face_report(result) -> str:
    size = "x".join(str(side) for side in result.frames.shape[3:1:-1])
    where = f"face at {result.face_box} (x0, y0, x1, y1)" if result.face_box else "whole picture"
    return f"{where}; video {size} px" + (f". {result.face_note}" if result.face_note else "")
