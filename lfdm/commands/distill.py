"""`python -m lfdm distill`: teach a student U-Net to sample in 1 or 2 steps what a pipeline samples in its default.

python -m lfdm distill --teacher checkpoints --steps 1 --output-dir runs/distill-1
python -m lfdm distill --resume runs/distill-1 --max-steps 8000

Without --config (and without --resume) the run takes lfdm/configs/distill64.yaml. The run's model/ is a pipeline
folder whose default is the student's sampler at its steps (`python app.py --model runs/distill-1/model`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lfdm.commands._run_config import add_run_arguments, load_run_config, log_progress

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "distill64.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "train_distill")
    parser.add_argument(
        "--teacher", metavar="DIR", help="the pipeline folder to distil, e.g. checkpoints (train_distill.teacher)"
    )
    parser.add_argument("--steps", type=int, choices=(1, 2), help="the student's sampling steps (train_distill.steps)")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="folder for the teacher's samples, made once (train_distill.cache_dir)"
    )


def run(args: argparse.Namespace) -> int:
    from lfdm.training.distill import train

    if args.config is None and args.resume is None:
        args.config = str(DEFAULT_CONFIG)
    config = load_run_config(args, "train_distill", start_hint="--config FILE")
    if args.resume is not None and args.steps is not None and args.steps != config.train_distill.steps:
        raise ValueError(
            f"the run being resumed distils to {config.train_distill.steps} step(s); start a new run for "
            f"--steps {args.steps}."
        )
    if args.cache_dir is not None:
        config.train_distill = dataclasses.replace(config.train_distill, cache_dir=args.cache_dir)
    log_progress()
    run_dir = train(config, teacher=args.teacher, steps=args.steps, resume=args.resume)
    print(f"distilled pipeline ({config.train_distill.steps} step(s) by default): {Path(run_dir) / 'model'}")
    return 0
