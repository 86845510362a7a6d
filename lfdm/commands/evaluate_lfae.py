"""`python -m lfdm evaluate-lfae`: how well an autoencoder reconstructs test videos from their first frame.

python -m lfdm evaluate-lfae --model runs/lfae-synthface64-20250101-120000/model --data synthface
python -m lfdm evaluate-lfae --model checkpoints/mug/lfae --data /data/MUG --preset mug --out mug_lfae.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a LatentFlowAutoencoder save_pretrained folder")
    parser.add_argument("--data", default="synthface", help="'synthface' (rendered test identities) or a video folder")
    parser.add_argument(
        "--preset", default="folder", choices=["mug", "mhad", "natops", "folder"], help="layout of a video folder"
    )
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace: test identities (x 7 labels)")
    parser.add_argument("--seed", type=int, default=0, help="SynthFace: data set seed")
    parser.add_argument(
        "--num-frames", type=int, help="frames per video, uniformly sampled (default: 16 SynthFace, 40 real)"
    )
    parser.add_argument("--max-videos", type=int, help="evaluate at most this many videos")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per forward pass")
    parser.add_argument("--device", default="auto", help="'auto' (a GPU if there is one), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--out", default="lfae_evaluation.json", help="JSON file for the scores")


def run(args: argparse.Namespace) -> int:
    import torch

    from lfdm.evaluation.lfae import evaluate_reconstruction, evaluation_videos
    from lfdm.models import LatentFlowAutoencoder
    from lfdm.training.config import DataConfig

    logging.basicConfig(level=logging.WARNING)
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(
            f"{args.model} is not a save_pretrained folder (no config.json); pass e.g. <run>/model."
        )
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = LatentFlowAutoencoder.from_pretrained(args.model).to(device)
    synthface = args.data == "synthface"
    data = DataConfig(
        dataset="synthface" if synthface else args.preset,
        root=None if synthface else args.data,
        resolution=model.config.image_size,
        num_frames=args.num_frames or (16 if synthface else 40),
        num_identities=args.num_identities,
        seed=args.seed,
    )
    videos = evaluation_videos(data, max_videos=args.max_videos, labels=True)
    evaluation = evaluate_reconstruction(model, videos, batch_size=args.batch_size)
    print(evaluation.table())
    record = {"model": str(args.model), "data": args.data, "preset": None if synthface else args.preset}
    record |= evaluation.to_dict()
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"scores written to {args.out}")
    return 0
