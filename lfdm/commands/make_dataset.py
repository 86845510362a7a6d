"""`python -m lfdm make-dataset`: render SynthFace to a folder of mp4 files, laid out like MUG or by label.

    python -m lfdm make-dataset --out data/synthface64 --resolution 64 --frames 32 \
        --train-identities 200 --test-identities 20 --preview synthface64.png

writes `OUT/{train,test}/<identity>/<label>/<take>.mp4` and `OUT/metadata.json` (labels, splits, identity and
per-video parameters, seeds), and with `--preview` a contact sheet (one row per expression, frames left to right).

    python -m lfdm make-dataset --layout labels --labels wink --videos 40 --out clips/

writes clips the way a user's own videos are laid out, `OUT/<label>/<identity>_<take>.mp4` (what `--data folder
--data-root OUT` reads): `--videos` clips per label, each of a different face. Extra actions such as `wink` render
only on request; add the seven old labels to the list to mix them in. Without `--seed`, this layout draws faces
of split seed 1, which neither the shipped model (trained on seed 0's train faces) nor its evaluation (seed 0's test
faces) has seen.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import asdict
from pathlib import Path

from lfdm.data.synthface.dataset import identity_name, split_identities
from lfdm.data.synthface.expressions import (
    ALL_SYNTHFACE_LABELS,
    SYNTHFACE_EXTRA_LABELS,
    SYNTHFACE_LABELS,
    label_index,
    sample_video_params,
)
from lfdm.data.synthface.identity import sample_identity

LAYOUTS = {
    "splits": "{split}/{identity}/{label}/{take:03d}.mp4",  # MUG-like, with a train/test split
    "labels": "{label}/{identity}_{take:03d}.mp4",  # a folder of labelled clips (`--data folder`), no split
}
UNSEEN_SEED = 1  # split seed of the faces `--layout labels` draws by default: none is a shipped-model face


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--resolution", type=int, default=64, help="frame size in pixels (square), e.g. 64 or 128")
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--train-identities", type=int, default=20, help="number of training identities")
    parser.add_argument("--test-identities", type=int, default=5, help="number of test identities (never in train)")
    parser.add_argument("--takes", type=int, default=1, help="videos per identity and label")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"split seed: picks the identities (default 0; --layout labels: {UNSEEN_SEED}, faces no shipped model "
        "saw)",
    )
    parser.add_argument(
        "--layout",
        default="splits",
        choices=sorted(LAYOUTS),
        help="splits: {split}/{identity}/{label}/{take}.mp4; labels: {label}/{identity}_{take}.mp4 (a folder of "
        "labelled clips, as `--data folder` reads; training faces only)",
    )
    parser.add_argument(
        "--videos",
        type=int,
        default=None,
        help="--layout labels: clips per label, each of a different face (sets --train-identities, --takes 1)",
    )
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate written into the mp4 files")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=list(SYNTHFACE_LABELS),
        choices=ALL_SYNTHFACE_LABELS,
        metavar="LABEL",
        help=f"expressions to render, any of {', '.join(SYNTHFACE_LABELS)} (default: these seven) and the extra "
        f"action(s) {', '.join(SYNTHFACE_EXTRA_LABELS)}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="rendering processes (default: the number of CPU cores; 1 = no subprocesses)",
    )
    parser.add_argument(
        "--preview",
        type=Path,
        default=None,
        help="also write a contact sheet PNG of the first test identity (labels layout: the first face), one row per "
        "expression",
    )


def _render_and_write(task: tuple) -> float:
    """Worker: render one video and write it as mp4; returns the seconds spent rendering (not encoding)."""
    from lfdm.data.synthface.render import render_video
    from lfdm.video import write_video

    path, identity_seed, label, take, resolution, num_frames, fps = task
    start = time.perf_counter()
    frames = render_video(identity_seed, label, take, resolution=resolution, num_frames=num_frames)
    elapsed = time.perf_counter() - start
    write_video(path, frames, fps=fps)
    return elapsed


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only compete with them


def _plan(args) -> tuple[list[tuple], dict]:
    """The rendering tasks and the metadata describing them."""
    splits = {"train": split_identities("train", args.train_identities, args.seed)}
    if args.layout == "splits":
        splits["test"] = split_identities("test", args.test_identities, args.seed)
    # the seven labels keep their indices; extra actions follow them
    labels = [label for label in ALL_SYNTHFACE_LABELS if label in SYNTHFACE_LABELS or label in args.labels]
    tasks, videos, identities = [], [], {}
    for split, seeds in splits.items():
        for seed in seeds:
            name = identity_name(seed)
            identities[name] = {"split": split, "seed": seed, "params": asdict(sample_identity(seed))}
            for label in args.labels:
                for take in range(args.takes):
                    relative = LAYOUTS[args.layout].format(split=split, identity=name, label=label, take=take)
                    tasks.append((args.out / relative, seed, label, take, args.resolution, args.frames, args.fps))
                    params = sample_video_params(seed, label, take)
                    videos.append(
                        {
                            "path": relative,
                            "split": split,
                            "identity": name,
                            "identity_seed": seed,
                            "label": label,
                            "label_index": labels.index(label),
                            "take": take,
                            "params": params.to_dict(),
                        }
                    )
    metadata = {
        "dataset": "SynthFace",
        "layout": LAYOUTS[args.layout],
        "resolution": args.resolution,
        "num_frames": args.frames,
        "fps": args.fps,
        "seed": args.seed,
        "takes": args.takes,
        "labels": labels,
        "splits": {split: [identity_name(seed) for seed in seeds] for split, seeds in splits.items()},
        "identities": identities,
        "videos": videos,
    }
    return tasks, metadata


def _resolve(args) -> None:
    """Fills the options whose defaults depend on the layout."""
    if args.videos is not None:
        if args.layout != "labels":
            raise ValueError(
                "--videos counts clips per label of --layout labels; with --layout splits use "
                "--train-identities, --test-identities and --takes."
            )
        args.train_identities, args.takes = args.videos, 1
    if args.seed is None:
        args.seed = UNSEEN_SEED if args.layout == "labels" else 0
    labels = list(dict.fromkeys(args.labels))
    if labels != list(args.labels):
        raise ValueError(f"--labels names a label twice: {' '.join(args.labels)}; give each once.")
    for label in labels:
        label_index(label)


def _check(args) -> None:
    if args.videos is not None and args.videos < 1:
        raise ValueError(f"--videos must be at least 1; got {args.videos}.")
    _resolve(args)
    for name in ("resolution", "frames", "train_identities", "test_identities", "takes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}.")
    if args.resolution < 16:
        raise ValueError(f"--resolution must be at least 16; got {args.resolution}.")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {args.workers}.")
    if args.preview is not None and args.preview.suffix.lower() != ".png":
        raise ValueError(f"--preview must name a .png file; got {args.preview}.")


def run(args) -> int:
    _check(args)
    from tqdm import tqdm

    tasks, metadata = _plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    workers = args.workers or multiprocessing.cpu_count()
    start = time.perf_counter()
    progress = tqdm(total=len(tasks), unit="video", desc="rendering", file=sys.stderr)
    render_seconds = 0.0
    if workers == 1:
        for task in tasks:
            render_seconds += _render_and_write(task)
            progress.update(1)
    else:
        # fork where the platform has it: workers then start at once, without importing torch again
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker) as pool:
            for seconds in pool.imap_unordered(_render_and_write, tasks, chunksize=4):
                render_seconds += seconds
                progress.update(1)
    progress.close()
    elapsed = time.perf_counter() - start
    (args.out / "metadata.json").write_text(json.dumps(metadata, indent=1))
    frames = len(tasks) * args.frames
    print(
        f"wrote {len(tasks)} videos ({frames} frames, {args.resolution} px) and metadata.json to {args.out} "
        f"in {elapsed:.1f} s with {workers} worker(s); drawing took {render_seconds:.1f} s summed over "
        f"workers ({1000 * render_seconds / frames:.2f} ms per frame), the rest is mp4 encoding and start-up"
    )
    if args.preview is not None:
        import PIL.Image

        from lfdm.data.synthface.sheet import contact_sheet

        split = "test" if args.layout == "splits" else "train"  # the labels layout has training faces only
        seed = split_identities(split, getattr(args, f"{split}_identities"), args.seed)[0]
        sheet = contact_sheet(seed, resolution=args.resolution, num_frames=args.frames, labels=tuple(args.labels))
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(sheet).save(args.preview)
        print(f"wrote the contact sheet {args.preview}")
    return 0
