"""What `train-lfae` and `train-dm` share: the run-config options and how they override the YAML."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from lfdm.data.factory import DATASETS

logger = logging.getLogger(__name__)


def add_run_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """--config, --resume, --output-dir, --data, --data-root, --label-from, --max-steps; `section` is `train_lfae` or
    `train_dm`."""
    parser.add_argument("--config", help="YAML run config (lfdm/configs/*.yaml); default with --resume: the run's own")
    parser.add_argument("--resume", metavar="DIR", help="continue a run: its folder, or one checkpoint-<step> folder")
    parser.add_argument("--output-dir", help=f"run folder (overrides {section}.output_dir)")
    parser.add_argument("--data", choices=DATASETS, metavar="NAME", help="training videos (overrides data.dataset)")
    parser.add_argument("--data-root", help="folder of the training videos (overrides data.root)")
    parser.add_argument(
        "--label-from", metavar="CSV", help="folder data: 'folder' or a CSV path,label[,split] (data.label_from)"
    )
    parser.add_argument("--max-steps", type=int, help=f"optimiser steps in total (overrides {section}.max_steps)")


def load_run_config(args: argparse.Namespace, section: str, *, start_hint: str):
    """The run config of `--config`, or of the run being resumed, with the command-line overrides applied."""
    from lfdm.training.config import load_config
    from lfdm.training.runs import CONFIG_FILE, find_checkpoint, run_dir_of

    if args.config is None and args.resume is None:
        raise ValueError(f"pass {start_hint} to start a run, or --resume DIR to continue one.")
    config_path = args.config or run_dir_of(find_checkpoint(args.resume)) / CONFIG_FILE
    config = load_config(config_path)
    if getattr(config, section) is None:
        raise ValueError(f"{config_path} has no {section} section; start from lfdm/configs/synthface64.yaml.")
    overrides = {
        name: value
        for name, value in (("output_dir", args.output_dir), ("max_steps", args.max_steps))
        if value is not None
    }
    if overrides:
        setattr(config, section, dataclasses.replace(getattr(config, section), **overrides))
    options = (("dataset", args.data), ("root", args.data_root), ("label_from", args.label_from))
    data_overrides = {name: value for name, value in options if value is not None}
    if any(getattr(config.data, name) != value for name, value in data_overrides.items()):
        config.data = dataclasses.replace(config.data, **data_overrides)
        _labels_from_the_data(config, config_path)
    return config


def _labels_from_the_data(config, config_path) -> None:
    """Other data than the config file names: its label list was written for that data, so the labels come from
    the new data instead (its sub-folders or CSV, after the labels of `train_dm.init_from`'s pipeline)."""
    if config.labels and config.labels.get("labels"):
        logger.info(
            "the data set given on the command line names its own labels; %s's label list %s is not used",
            config_path,
            config.labels["labels"],
        )
        config.labels = {key: value for key, value in config.labels.items() if key != "labels"}


def log_progress() -> None:
    """INFO lines from lfdm (progress, losses), warnings from everything else."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lfdm").setLevel(logging.INFO)
