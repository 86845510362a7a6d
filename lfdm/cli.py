"""`python -m lfdm <command>`: one entry point, one module per command under `lfdm/commands/`.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Only the chosen command's module is
imported, so `python -m lfdm --help` stays fast and a broken optional dependency breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "make-dataset": Command("lfdm.commands.make_dataset", "render the SynthFace data set to a folder of mp4 files"),
    "prepare-videos": Command(
        "lfdm.commands.prepare_videos", "frame a folder of your own clips like a model's pictures, for training"
    ),
    "train-lfae": Command("lfdm.commands.train_lfae", "train stage one, the latent flow autoencoder"),
    "evaluate-lfae": Command("lfdm.commands.evaluate_lfae", "reconstruction metrics of a trained autoencoder"),
    "train-dm": Command("lfdm.commands.train_dm", "train stage two, the flow diffusion model"),
    "train-refiner": Command("lfdm.commands.train_refiner", "train the photo refiner (new content at photo size)"),
    "distill": Command("lfdm.commands.distill", "teach a U-Net to sample in 1 or 2 steps what a pipeline does in more"),
    "embed-labels": Command("lfdm.commands.embed_labels", "compute the official BERT label embeddings"),
    "convert": Command("lfdm.commands.convert", "convert the authors' released checkpoints to a pipeline folder"),
    "generate": Command("lfdm.commands.generate", "generate videos from an image and action labels"),
    "animate": Command("lfdm.commands.animate", "animate an image with the motion of a driving video"),
    "train-classifier": Command("lfdm.commands.train_classifier", "train the action classifier evaluate judges with"),
    "evaluate": Command("lfdm.commands.evaluate", "action accuracy, Frechet distance and identity metrics"),
    "choose-default": Command(
        "lfdm.commands.choose_default", "choose a model's default sampling steps from a sampler evaluation"
    ),
    "bench": Command("lfdm.commands.bench", "speed and memory benchmarks"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m lfdm <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`python -m lfdm <command> --help` shows the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    parser = argparse.ArgumentParser(prog=f"python -m lfdm {name}", description=command.summary)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # User mistakes (a wrong path, an unknown label) get one clear line, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 1
