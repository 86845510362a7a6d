"""`python -m lfdm train-dm`: train stage two, the flow diffusion model, on a trained autoencoder's flows.

python -m lfdm train-dm --config lfdm/configs/synthface64.yaml --lfae runs/lfae-synthface64-20250101-120000
python -m lfdm train-dm --resume runs/dm-synthface64-20250101-130000 --max-steps 20000
accelerate launch -m lfdm train-dm --config lfdm/configs/mug128.yaml --lfae checkpoints/mug-lfae
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML run config (lfdm/configs/*.yaml); default with --resume: the run's own")
    parser.add_argument(
        "--lfae",
        metavar="DIR",
        help="the trained autoencoder: a train-lfae run folder or its model/ folder (overrides train_dm.lfae)",
    )
    parser.add_argument("--resume", metavar="DIR", help="continue a run: its folder, or one checkpoint-<step> folder")
    parser.add_argument("--output-dir", help="run folder (overrides train_dm.output_dir)")
    parser.add_argument("--data-root", help="folder of the training videos (overrides data.root)")
    parser.add_argument("--max-steps", type=int, help="optimiser steps in total (overrides train_dm.max_steps)")


def run(args: argparse.Namespace) -> int:
    from lfdm.training.common import CONFIG_FILE, find_checkpoint, run_dir_of
    from lfdm.training.config import load_config
    from lfdm.training.dm import train

    if args.config is None and args.resume is None:
        raise ValueError("pass --config FILE (and --lfae DIR) to start a run, or --resume DIR to continue one.")
    config_path = args.config
    if config_path is None:
        config_path = run_dir_of(find_checkpoint(args.resume)) / CONFIG_FILE
    config = load_config(config_path)
    if config.train_dm is None:
        raise ValueError(f"{config_path} has no train_dm section; start from lfdm/configs/synthface64.yaml.")
    overrides = {}
    if args.output_dir is not None:
        overrides["output_dir"] = args.output_dir
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if overrides:
        config.train_dm = dataclasses.replace(config.train_dm, **overrides)
    if args.data_root is not None:
        config.data = dataclasses.replace(config.data, root=args.data_root)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lfdm").setLevel(logging.INFO)
    run_dir = train(config, lfae=args.lfae, resume=args.resume)
    print(f"trained diffusion model (pipeline folder): {Path(run_dir) / 'model'}")
    return 0
