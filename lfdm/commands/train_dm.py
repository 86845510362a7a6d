"""`python -m lfdm train-dm`: train stage two, the flow diffusion model, on a trained autoencoder's flows.

python -m lfdm train-dm --config lfdm/configs/synthface64.yaml --lfae runs/lfae-synthface64-20250101-120000
python -m lfdm train-dm --resume runs/dm-synthface64-20250101-130000 --max-steps 20000
accelerate launch -m lfdm train-dm --config lfdm/configs/mug128.yaml --lfae checkpoints/mug-lfae
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_dm")
    parser.add_argument(
        "--lfae",
        metavar="DIR",
        help="the trained autoencoder: a train-lfae run folder or its model/ folder (overrides train_dm.lfae)",
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.dm import train

    config = load_run_config(args, "train_dm", start_hint="--config FILE (and --lfae DIR)")
    log_progress()
    run_dir = train(config, lfae=args.lfae, resume=args.resume)
    print(f"trained diffusion model (pipeline folder): {Path(run_dir) / 'model'}")
    return 0
