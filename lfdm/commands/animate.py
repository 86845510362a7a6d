"""`python -m lfdm animate`: a picture moved like a driving video, through the autoencoder (motion transfer).

    python -m lfdm animate --model checkpoints --image face.png --driving assets/driving/surprise.mp4 --out outputs

writes to `<out>/`:
- `video.mp4`  the animated picture (its face found and pasted back, at the picture's size with `--resolution
  input`, the default), one frame per driving frame, at the driving video's frame rate;
- `panels.mp4` input | animated | warped input | flow colours | warped grid | occlusion, side by side;
- `video.gif`  with `--gif`;
- `flows.npz`  `flows` (F, h, w, 2) absolute sampling grids, `occlusions` (F, h, w) in [0, 1], `labels` (1,).

The driving video may be an mp4 (or anything ffmpeg reads), a GIF or a folder of frames; at most `--max-frames` of
its frames are used. With `--driving-face auto` (the default) a face model finds the driving face in every frame
and frames it like its training faces, so the camera's motion does not reach the picture; `--driving-face none`
uses the frames as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lfdm.commands.options import add_device_arguments, add_photo_arguments
from lfdm.driving import DRIVING_LABEL, MAX_DRIVING_FRAMES
from lfdm.framing import DRIVING_FACE_MODES

DEFAULT_FPS = 8.0  # when the driving video does not say (a folder of frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="pipeline folder (save_pretrained) or Hugging Face repo id")
    parser.add_argument("--image", required=True, help="the picture to animate (PNG, JPEG, ...; any size)")
    parser.add_argument("--driving", required=True, help="driving video: mp4, GIF, ... or a folder of frames")
    parser.add_argument("--out", default="outputs", help="output folder")
    parser.add_argument(
        "--absolute",
        action="store_true",
        help="take each driving frame's pose and shape (same face); default: relative motion since driving frame 0",
    )
    parser.add_argument("--motion-scale", type=float, default=1.0, help="0 = still, 1 = as driven, 2 = twice as much")
    parser.add_argument(
        "--max-frames", type=int, default=MAX_DRIVING_FRAMES, help="driving frames used at most; longer videos are cut"
    )
    parser.add_argument(
        "--driving-face",
        choices=DRIVING_FACE_MODES,
        default="auto",
        help="auto: find and frame the driving face in every frame (face models); none: use the frames as they are",
    )
    parser.add_argument("--fps", type=float, default=None, help="frame rate of the written videos (default: driving's)")
    parser.add_argument("--gif", action="store_true", help="also write video.gif")
    add_device_arguments(parser)
    parser.add_argument("--panel-size", type=int, default=128, help="tile height of panels.mp4, pixels")
    add_photo_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.fps is not None and not args.fps > 0:
        raise ValueError(f"--fps must be positive; got {args.fps}.")
    if args.max_frames < 2:
        raise ValueError(f"--max-frames must be at least 2; got {args.max_frames}.")

    from lfdm.driving import load_driving_video
    from lfdm.flow_edits import check_motion_scale
    from lfdm.images import load_image
    from lfdm.outputs import write_label_outputs
    from lfdm.photo import check_photo_options
    from lfdm.pipeline import load_pipeline
    from lfdm.video import probe_video

    check_motion_scale(args.motion_scale)
    check_photo_options(args.face, args.resolution, args.max_resolution)
    image = load_image(args.image)  # fail on a bad picture or video before the model loads
    if not Path(args.driving).exists():
        raise FileNotFoundError(f"no driving video at {args.driving!r}; pass an mp4, GIF or a folder of frames.")
    probe_video(args.driving)
    pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype)
    driving = load_driving_video(args.driving, pipe.image_size, max_frames=args.max_frames)
    if driving.truncated:
        print(f"note: the driving video has {driving.total_frames} frames; using the first {len(driving.frames)}.")
    result = pipe.animate(
        image, driving, relative=not args.absolute, motion_scale=args.motion_scale,
        face=args.face, driving_face=args.driving_face, resolution=args.resolution,
        max_resolution=args.max_resolution,
    )  # fmt: skip
    if result.face_note:
        print(f"note: {result.face_note}")
    if result.driving_note:
        print(f"note: {result.driving_note}")
    written = write_label_outputs(
        Path(args.out),
        DRIVING_LABEL,
        result.model_input,
        result.frames[0],
        result.warped[0],
        result.flows[0],
        result.occlusions[0],
        fps=args.fps or driving.fps or DEFAULT_FPS,
        gif=args.gif,
        panel_size=args.panel_size,
        model_frames=result.model_frames[0],
    )
    print(f"{len(result.frames[0])} frames: " + ", ".join(str(path) for path in written))
    return 0
