"""`python -m lfdm train-dm`: train stage two, the flow diffusion model, on a trained autoencoder's flows.

python -m lfdm train-dm --config lfdm/configs/synthface64.yaml --lfae runs/lfae-synthface64-20250101-120000
python -m lfdm train-dm --resume runs/dm-synthface64-20250101-130000 --max-steps 20000
accelerate launch -m lfdm train-dm --config lfdm/configs/mug128.yaml --lfae checkpoints/mug-lfae
python -m lfdm train-dm --config checkpoints/training/21_dm.yaml --data folder --data-root clips \
    --init-from checkpoints --max-steps 300        # teach the shipped model the actions of clips/<label>/
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_dm")
    parser.add_argument(
        "--lfae",
        metavar="DIR",
        help="the trained autoencoder: a train-lfae run folder or its model/ folder (overrides train_dm.lfae; "
        "default with --init-from: that pipeline's own)",
    )
    parser.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from this pipeline folder (checkpoints/, or a run's model/): its U-Net, its labels' rows and, "
        "without --lfae, its autoencoder; new labels of the data get new rows (overrides train_dm.init_from)",
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.dm import train

    config = load_run_config(args, "train_dm", start_hint="--config FILE (and --lfae DIR)")
    lfae = args.lfae
    if args.init_from is not None:
        config.train_dm = dataclasses.replace(config.train_dm, init_from=args.init_from)
        lfae = lfae or args.init_from  # a pipeline folder holds its autoencoder in lfae/
    log_progress()
    run_dir = train(config, lfae=lfae, resume=args.resume)
    print(f"trained diffusion model (pipeline folder): {Path(run_dir) / 'model'}")
    return 0
