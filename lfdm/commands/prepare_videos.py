"""`python -m lfdm prepare-videos`: frame a folder of raw clips the way a model's pictures are, for training.

python -m lfdm prepare-videos raw/ --model checkpoints --out clips/
python -m lfdm train-dm --config checkpoints/training/21_dm.yaml --data folder --data-root clips --init-from checkpoints

raw/<label>/<video> becomes clips/<label>/<video>/ (PNG frames): resampled to --fps, cut to the model's frame count
(the first frames), the face found, followed and framed like the model's faces (or the whole frame, for a
whole-picture model). Clips that cannot be used are skipped with the reason; see `lfdm.data.prepare`.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw", help="folder of raw clips, one sub-folder per label: RAW/<label>/<video>")
    parser.add_argument(
        "--model", required=True, help="the pipeline folder the clips are for (checkpoints, or a run's model/)"
    )
    parser.add_argument("--out", required=True, help="folder for the prepared clips (the data set of --data-root)")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate every clip is resampled to (default: 10, SynthFace's; the model's frame count at this rate "
        "is the length of one action)",
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.data.prepare import DEFAULT_FPS, clip_format_of, prepare_folder

    clip_format = clip_format_of(args.model, fps=args.fps or DEFAULT_FPS)
    kind = "faces framed like the model's" if clip_format.framing.is_face else "whole frames, resized and padded"
    print(
        f"preparing {clip_format.num_frames}-frame clips of {clip_format.size} px at {clip_format.fps:g} fps "
        f"({kind}) from {args.raw}"
    )
    report = prepare_folder(args.raw, args.out, clip_format)
    print("\n".join(report.lines()))
    if not report.kept:
        print(f"error: no clip of {args.raw} could be used; see the reasons above.", file=sys.stderr)
        return 1
    print(f"train on them: --data folder --data-root {args.out}")
    return 0
