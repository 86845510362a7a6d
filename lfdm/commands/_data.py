"""The data options every command spells the same way: `--data NAME --data-root DIR [--label-from CSV]`."""

from __future__ import annotations

import argparse

from lfdm.data.factory import DATASET_DESCRIPTIONS, DATASETS


def add_data_arguments(
    parser: argparse.ArgumentParser, what: str, *, default: str | None = "synthface", older_folder_spelling=False
) -> None:
    """--data (one of `lfdm.data.factory.DATASETS`), --data-root, --label-from; `what` the videos are for.

    `older_folder_spelling`: --data also takes a folder, with --preset NAME (evaluate-lfae's first spelling, kept
    so that older scripts still run); read the options with `data_source` then.
    """
    choices = ", ".join(DATASETS)
    parser.add_argument(
        "--data",
        default=default,
        choices=None if older_folder_spelling else DATASETS,
        metavar="NAME",
        help=f"{what}: {choices} (real: --data-root)",
    )
    rendered = ", ".join(name for name, described in DATASET_DESCRIPTIONS.items() if described.rendered)
    parser.add_argument("--data-root", help=f"folder of the videos (all but {rendered})")
    parser.add_argument("--label-from", default="folder", help="folder data: 'folder' or a CSV (path,label,split)")
    if older_folder_spelling:
        parser.add_argument("--preset", choices=DATASETS[1:], help="older spelling: --data DIR --preset NAME")


def data_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """(data set name, video folder) from `--data NAME --data-root DIR`, or from the older `--data DIR --preset
    NAME` (`older_folder_spelling`)."""
    preset = getattr(args, "preset", None)
    if args.data in DATASETS:
        if preset is not None:
            raise ValueError(f"--preset goes with --data DIR; write --data {preset} --data-root DIR instead.")
        return args.data, args.data_root
    if args.data_root is not None:
        raise ValueError(f"--data must be one of {list(DATASETS)} with --data-root; got {args.data!r}.")
    return preset or "folder", args.data


def data_defaults(field: str) -> str:
    """A `DatasetDescription` field's default per data set, for help texts ('synthface 16, mug/mhad/natops/folder
    40')."""
    names_by_value: dict = {}
    for name, described in DATASET_DESCRIPTIONS.items():
        names_by_value.setdefault(getattr(described, field), []).append(name)
    return ", ".join(f"{'/'.join(names)} {value}" for value, names in names_by_value.items())
