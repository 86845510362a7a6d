"""`python -m lfdm make-dataset`: render SynthFace to a folder laid out like MUG.

    python -m lfdm make-dataset --out data/synthface64 --resolution 64 --frames 32 \
        --train-identities 200 --test-identities 20 --preview synthface64.png

writes `OUT/{train,test}/<identity>/<label>/<take>.mp4` and `OUT/metadata.json` (labels, splits, identity and
per-video parameters, seeds), and with `--preview` a contact sheet (one row per expression, frames left to right).
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
from lfdm.data.synthface.expressions import SYNTHFACE_LABELS, sample_video_params
from lfdm.data.synthface.identity import sample_identity


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--resolution", type=int, default=64, help="frame size in pixels (square), e.g. 64 or 128")
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--train-identities", type=int, default=20, help="number of training identities")
    parser.add_argument("--test-identities", type=int, default=5, help="number of test identities (never in train)")
    parser.add_argument("--takes", type=int, default=1, help="videos per identity and label")
    parser.add_argument("--seed", type=int, default=0, help="split seed: picks the identities of both splits")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate written into the mp4 files")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=list(SYNTHFACE_LABELS),
        choices=SYNTHFACE_LABELS,
        metavar="LABEL",
        help=f"expressions to render, any of {', '.join(SYNTHFACE_LABELS)} (default: all)",
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
        help="also write a contact sheet PNG of the first test identity (one row per expression)",
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
    splits = {
        "train": split_identities("train", args.train_identities, args.seed),
        "test": split_identities("test", args.test_identities, args.seed),
    }
    tasks, videos, identities = [], [], {}
    for split, seeds in splits.items():
        for seed in seeds:
            name = identity_name(seed)
            identities[name] = {"split": split, "seed": seed, "params": asdict(sample_identity(seed))}
            for label in args.labels:
                for take in range(args.takes):
                    relative = f"{split}/{name}/{label}/{take:03d}.mp4"
                    tasks.append((args.out / relative, seed, label, take, args.resolution, args.frames, args.fps))
                    params = sample_video_params(seed, label, take)
                    videos.append(
                        {
                            "path": relative,
                            "split": split,
                            "identity": name,
                            "identity_seed": seed,
                            "label": label,
                            "label_index": SYNTHFACE_LABELS.index(label),
                            "take": take,
                            "params": params.to_dict(),
                        }
                    )
    metadata = {
        "dataset": "SynthFace",
        "layout": "{split}/{identity}/{label}/{take:03d}.mp4",
        "resolution": args.resolution,
        "num_frames": args.frames,
        "fps": args.fps,
        "seed": args.seed,
        "takes": args.takes,
        "labels": list(SYNTHFACE_LABELS),
        "splits": {split: [identity_name(seed) for seed in seeds] for split, seeds in splits.items()},
        "identities": identities,
        "videos": videos,
    }
    return tasks, metadata


def _check(args) -> None:
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

        seed = split_identities("test", args.test_identities, args.seed)[0]
        sheet = contact_sheet(seed, resolution=args.resolution, num_frames=args.frames, labels=tuple(args.labels))
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(sheet).save(args.preview)
        print(f"wrote the contact sheet {args.preview}")
    return 0
