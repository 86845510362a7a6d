"""`python -m lfdm train-refiner`: train the photo refiner, which paints new content at the photo's resolution.

python -m lfdm train-refiner --config lfdm/configs/refiner256.yaml --lfae checkpoints --output-dir runs/refiner
python -m lfdm train-refiner --resume runs/refiner --max-steps 3000 --into checkpoints
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
        help="the trained autoencoder: a pipeline folder, a train-lfae run or its model/ (overrides "
        "train_refiner.lfae)",
    )
    parser.add_argument(
        "--into", metavar="PIPELINE", help="when trained, add the refiner to this pipeline folder (its refiner/)"
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.refiner import train

    config = load_run_config(args, "train_refiner", start_hint="--config FILE (and --lfae DIR)")
    log_progress()
    if args.into is not None and not (Path(args.into) / "model_index.json").is_file():
        raise FileNotFoundError(f"--into {args.into!r} has no model_index.json; pass a saved pipeline folder.")
    run_dir = train(config, lfae=args.lfae, resume=args.resume)
    print(f"trained refiner: {Path(run_dir) / 'model'}")
    if args.into is not None:
        from lfdm.pipeline import add_refiner

        print(f"the pipeline {args.into} now uses it: {add_refiner(args.into, Path(run_dir) / 'model')}")
    return 0
