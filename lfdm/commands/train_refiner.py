"""`python -m lfdm train-refiner`: train the photo refiner, which paints new content at the photo's resolution.

python -m lfdm train-refiner --config lfdm/configs/refiner256.yaml --lfae checkpoints --output-dir runs/refiner
python -m lfdm train-refiner --resume runs/refiner --max-steps 3000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_refiner")
    parser.add_argument(
        "--lfae",
        metavar="DIR",
        help="the trained autoencoder: a pipeline folder, a train-lfae run or its model/ (overrides train_refiner.lfae)",
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.refiner import train

    config = load_run_config(args, "train_refiner", start_hint="--config FILE (and --lfae DIR)")
    log_progress()
    run_dir = train(config, lfae=args.lfae, resume=args.resume)
    print(f"trained refiner: {Path(run_dir) / 'model'} (add it to a pipeline folder as refiner/)")
    return 0
