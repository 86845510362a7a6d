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

from lfdm.commands._data import add_data_arguments, data_defaults, data_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a LatentFlowAutoencoder save_pretrained folder")
    add_data_arguments(parser, "test videos", older_folder_spelling=True)
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace: test identities (x 7 labels)")
    parser.add_argument("--data-seed", "--seed", dest="seed", type=int, default=0, help="SynthFace: data set seed")
    parser.add_argument(
        "--num-frames", type=int, help=f"frames per video, uniformly sampled (default: {data_defaults('num_frames')})"
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

    from lfdm.data.factory import DataConfig, describe_dataset
    from lfdm.evaluation.lfae import evaluate_reconstruction, evaluation_videos
    from lfdm.models import LatentFlowAutoencoder

    logging.basicConfig(level=logging.WARNING)
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(
            f"{args.model} is not a save_pretrained folder (no config.json); pass e.g. <run>/model."
        )
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = LatentFlowAutoencoder.from_pretrained(args.model).to(device)
    dataset, root = data_source(args)
    data = DataConfig(
        dataset=dataset,
        root=root,
        label_from=args.label_from,
        resolution=model.config.image_size,
        num_frames=args.num_frames or describe_dataset(dataset).num_frames,
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
