"""`python -m lfdm evaluate-lfae`: how well an autoencoder reconstructs test videos from their first frame.

python -m lfdm evaluate-lfae --model runs/lfae-synthface64-20250101-120000/model --data synthface
python -m lfdm evaluate-lfae --model checkpoints/mug/lfae --data mug --data-root /data/MUG --out mug_lfae.json

The older spelling `--data /data/MUG --preset mug` still works.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lfdm.data.factory import DATASETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a LatentFlowAutoencoder save_pretrained folder")
    # not `add_data_arguments`: --data also takes a folder here, the older spelling `--data DIR --preset NAME`
    parser.add_argument("--data", default="synthface", help=f"test videos: {', '.join(DATASETS)} (real: --data-root)")
    parser.add_argument("--data-root", help="folder of the videos (all but synthface)")
    parser.add_argument("--label-from", default="folder", help="folder data: 'folder' or a CSV (path,label,split)")
    parser.add_argument("--preset", choices=DATASETS[1:], help="older spelling: --data DIR --preset NAME")
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace: test identities (x 7 labels)")
    parser.add_argument("--data-seed", "--seed", dest="seed", type=int, default=0, help="SynthFace: data set seed")
    parser.add_argument(
        "--num-frames", type=int, help="frames per video, uniformly sampled (default: 16 SynthFace, 40 real)"
    )
    parser.add_argument("--max-videos", type=int, help="evaluate at most this many videos")
    parser.add_argument(
        "--appearance", type=float, default=0.0, help="SynthFace: fraction of test videos with a photographic look"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="frames per forward pass")
    parser.add_argument("--device", default="auto", help="'auto' (a GPU if there is one), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--out", default="lfae_evaluation.json", help="JSON file for the scores")


def run(args: argparse.Namespace) -> int:
    import torch

    from lfdm.data.factory import DataConfig
    from lfdm.evaluation.lfae import evaluate_reconstruction, evaluation_videos
    from lfdm.models import LatentFlowAutoencoder

    logging.basicConfig(level=logging.WARNING)
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(
            f"{args.model} is not a save_pretrained folder (no config.json); pass e.g. <run>/model."
        )
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = LatentFlowAutoencoder.from_pretrained(args.model).to(device)
    dataset, root = _data_source(args)
    synthface = dataset == "synthface"
    data = DataConfig(
        dataset=dataset,
        root=root,
        label_from=args.label_from,
        resolution=model.config.image_size,
        num_frames=args.num_frames or (16 if synthface else 40),
        num_identities=args.num_identities,
        seed=args.seed,
    )
    videos = evaluation_videos(data, max_videos=args.max_videos, labels=True, appearance=args.appearance)
    evaluation = evaluate_reconstruction(model, videos, batch_size=args.batch_size)
    print(evaluation.table())
    record = {"model": str(args.model), "data": dataset, "data_root": root, "appearance": args.appearance}
    record |= evaluation.to_dict()
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"scores written to {args.out}")
    return 0


def _data_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """(data set name, video folder) from `--data NAME --data-root DIR` or the older `--data DIR --preset NAME`."""
    if args.data in DATASETS:
        if args.preset is not None:
            raise ValueError(f"--preset goes with --data DIR; write --data {args.preset} --data-root DIR instead.")
        return args.data, args.data_root
    if args.data_root is not None:
        raise ValueError(f"--data must be one of {list(DATASETS)} with --data-root; got {args.data!r}.")
    return args.preset or "folder", args.data
