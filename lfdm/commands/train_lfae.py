"""`python -m lfdm train-lfae`: train stage one, the latent flow autoencoder.

python -m lfdm train-lfae --config lfdm/configs/synthface64.yaml
python -m lfdm train-lfae --resume runs/lfae-synthface64-20250101-120000 --max-steps 20000
accelerate launch -m lfdm train-lfae --config lfdm/configs/mug128.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_lfae")


def run(args: argparse.Namespace) -> int:
    from lfdm.training.lfae import train

    config = load_run_config(args, "train_lfae", start_hint="--config FILE")
    log_progress()
    run_dir = train(config, resume=args.resume)
    print(f"trained autoencoder: {Path(run_dir) / 'model'}")
    return 0
