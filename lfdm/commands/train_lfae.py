"""`python -m lfdm train-lfae`: train stage one, the latent flow autoencoder.

python -m lfdm train-lfae --config lfdm/configs/synthface64.yaml
python -m lfdm train-lfae --resume runs/lfae-synthface64-20250101-120000 --max-steps 20000
accelerate launch -m lfdm train-lfae --config lfdm/configs/mug128.yaml
python -m lfdm train-lfae --config checkpoints/training/20_lfae.yaml --data folder --data-root clips \
    --init-from checkpoints/lfae --max-steps 300     # the shipped autoencoder, fine-tuned on your clips
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_lfae")
    parser.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from this autoencoder: a save_pretrained folder such as checkpoints/lfae or a run's model/ "
        "(overrides train_lfae.init_from)",
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.lfae import train

    config = load_run_config(args, "train_lfae", start_hint="--config FILE")
    if args.init_from is not None:
        config.train_lfae = dataclasses.replace(config.train_lfae, init_from=args.init_from)
    log_progress()
    run_dir = train(config, resume=args.resume)
    print(f"trained autoencoder: {Path(run_dir) / 'model'}")
    return 0
