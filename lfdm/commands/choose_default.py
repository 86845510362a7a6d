"""`python -m lfdm choose-default`: pick a model's default sampling steps from a sampler evaluation.

    python -m lfdm evaluate --model checkpoints --num-identities 10 --guidance 1.0 \
        --configs "dpmsolver:25,dpmsolver:8,dpmsolver:6,dpmsolver:4,dpmsolver:3,dpmsolver:2" --out steps.json
    python -m lfdm choose-default --evaluation steps.json --model checkpoints --write

prints every setting's verdict and the choice: the fewest steps whose accuracy, FCD and frame-0 PSNR equal those of
the setting with the most steps (`lfdm.evaluation.default_steps`). `--write` records it in the model's scheduler
config, which the pipeline, `generate` and the app then sample by default. `evaluate --choose-default` does the
same right after evaluating.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluation", required=True, help="JSON written by python -m lfdm evaluate --out")
    parser.add_argument("--model", help="the evaluated pipeline folder; with --write the choice is saved there")
    parser.add_argument("--write", action="store_true", help="write the choice into the --model folder")


def report_choice(rows: Sequence[Mapping], model: str | None, *, write: bool) -> int:
    """Print the verdicts and the choice; with `write` save it into the pipeline folder `model`. 0 when a setting
    was chosen, 1 when none reaches the bar (nothing is written then)."""
    from lfdm.evaluation.default_steps import choose_default_steps, write_default_steps

    if write and not model:
        raise ValueError("--write needs --model, the pipeline folder to write the default into.")
    choice = choose_default_steps(rows)
    print(choice.table())
    if choice.chosen is None:
        return 1
    if write:
        written = write_default_steps(model, choice.scheduler, choice.steps)
        print(f"default {choice.scheduler}:{choice.steps} written to {written}")
    return 0


def run(args: argparse.Namespace) -> int:
    from lfdm.evaluation.default_steps import read_sampler_rows

    return report_choice(read_sampler_rows(args.evaluation), args.model, write=args.write)
