"""`python -m lfdm train-lfae`: train stage one, the latent flow autoencoder.

    python -m lfdm train-lfae --config lfdm/configs/synthface64.yaml
    python -m lfdm train-lfae --resume runs/lfae-synthface64-20250101-120000 --max-steps 20000
    accelerate launch -m lfdm train-lfae --config lfdm/configs/mug128.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML run config (lfdm/configs/*.yaml); default with --resume: the run's own")
    parser.add_argument("--resume", metavar="DIR", help="continue a run: its folder, or one checkpoint-<step> folder")
    parser.add_argument("--output-dir", help="run folder (overrides train_lfae.output_dir)")
    parser.add_argument("--data-root", help="folder of the training videos (overrides data.root)")
    parser.add_argument("--max-steps", type=int, help="optimiser steps in total (overrides train_lfae.max_steps)")


def run(args: argparse.Namespace) -> int:
    from lfdm.training.common import CONFIG_FILE, find_checkpoint, run_dir_of
    from lfdm.training.config import load_config
    from lfdm.training.lfae import train

    if args.config is None and args.resume is None:
        raise ValueError("pass --config FILE to start a run, or --resume DIR to continue one.")
    config_path = args.config
    if config_path is None:
        config_path = run_dir_of(find_checkpoint(args.resume)) / CONFIG_FILE
    config = load_config(config_path)
    overrides = {}
    if args.output_dir is not None:
        overrides["output_dir"] = args.output_dir
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if overrides:
        config.train_lfae = dataclasses.replace(config.train_lfae, **overrides)
    if args.data_root is not None:
        config.data = dataclasses.replace(config.data, root=args.data_root)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lfdm").setLevel(logging.INFO)
    run_dir = train(config, resume=args.resume)
    print(f"trained autoencoder: {Path(run_dir) / 'model'}")
    return 0
