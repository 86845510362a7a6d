"""The data options every command spells the same way: `--data NAME --data-root DIR [--label-from CSV]`."""

from __future__ import annotations

import argparse

from lfdm.data.factory import DATASETS


def add_data_arguments(parser: argparse.ArgumentParser, what: str, *, default: str | None = "synthface") -> None:
    """--data (one of `lfdm.data.factory.DATASETS`), --data-root, --label-from; `what` the videos are for."""
    choices = ", ".join(DATASETS)
    parser.add_argument(
        "--data", default=default, choices=DATASETS, metavar="NAME", help=f"{what}: {choices} (real: --data-root)"
    )
    parser.add_argument("--data-root", help="folder of the videos (all but synthface)")
    parser.add_argument("--label-from", default="folder", help="folder data: 'folder' or a CSV (path,label,split)")
