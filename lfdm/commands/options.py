"""Command-line options that several commands and `app.py` share: where and in which precision the networks
run, and how a photo is framed and rendered (`lfdm.photo`)."""

from __future__ import annotations

import argparse

from lfdm.framing import FACE_MODES, MAX_RESOLUTION  # numpy only: --help needs neither OpenCV nor torch


def resolution_argument(text: str) -> str | int | None:
    """--resolution: 'input' (the photo's size), 'model' (the model's own size: None) or a long side in pixels."""
    if text in ("input", "model"):
        return None if text == "model" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"use 'input', 'model' or a number of pixels; got {text!r}") from None


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype of `lfdm.pipeline.load_pipeline`."""
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    add_dtype_argument(parser)


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """--dtype: `lfdm.runtime.resolve_dtype`'s choices (the app takes it too)."""
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="network precision; auto = bfloat16 on a CPU with AMX-BF16, else float32 (env LFDM_DTYPE)",
    )


def add_photo_arguments(parser: argparse.ArgumentParser) -> None:
    """--face, --resolution and --max-resolution: the `face`, `resolution` and `max_resolution` of the pipeline."""
    parser.add_argument(
        "--face", choices=FACE_MODES, default="auto", help="auto follows the model: its largest face for a face model, "
        "the whole picture for a whole-picture model; none: the whole picture; require: stop when there is no face"
    )  # fmt: skip
    parser.add_argument(
        "--resolution", type=resolution_argument, default="input", metavar="{input,model,PIXELS}",
        help="video size: the picture's (input), the model's (model) or this long side in pixels",
    )  # fmt: skip
    parser.add_argument(
        "--max-resolution",
        type=int,
        default=MAX_RESOLUTION,
        help="longest side of the video, pixels (default: %(default)s)",
    )
