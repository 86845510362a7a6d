"""`python -m lfdm train-classifier`: train the action classifier that `python -m lfdm evaluate` judges videos with.

    python -m lfdm train-classifier                       # SynthFace -> checkpoints/eval/action_classifier
    python -m lfdm train-classifier --data mug --data-root /data/MUG --out checkpoints/eval/mug_classifier
    python -m lfdm train-classifier --labels anger disgust fear happiness neutral sadness surprise wink \
        --out checkpoints/eval/action_classifier_wink   # SynthFace's seven and its extra action

Writes the `save_pretrained` folder `--out` (with `training_summary.json`: settings, time, test accuracy and
confusion matrix) and a model card (`--card`, default `README.md` next to the folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import time
from pathlib import Path

from lfdm.commands._data import add_data_arguments, data_defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, "training videos")
    parser.add_argument(
        "--resolution", type=int, help=f"frame side read from the data, px (default: {data_defaults('resolution')})"
    )
    parser.add_argument(
        "--video-frames", type=int, help=f"frames read per video (default: {data_defaults('num_frames')})"
    )
    parser.add_argument("--num-frames", type=int, default=16, help="frames the classifier sees (evenly resampled)")
    parser.add_argument("--input-size", type=int, default=32, help="frame side the classifier sees, px")
    parser.add_argument("--channels", default="16,32,64,128", help="conv widths; the last is the feature size")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per step")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="AdamW peak learning rate")
    parser.add_argument("--pool-size", type=int, default=6000, help="distinct training clips read (real: >= 1 pass)")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="the classes, in order (default: every label of the data). SynthFace renders these, extra actions "
        "such as `wink` included; folder data: the labels its videos must carry",
    )
    parser.add_argument("--test-identities", type=int, default=100, help="SynthFace test identities (x labels)")
    parser.add_argument("--seed", type=int, default=0, help="weights, batches and augmentation")
    parser.add_argument("--data-seed", type=int, default=0, help="SynthFace data set seed (identity split)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="checkpoints/eval/action_classifier", help="save_pretrained folder")
    parser.add_argument("--card", help="model card file (default: README.md next to --out; 'none' to skip)")


def _datasets(args: argparse.Namespace):
    """(training data set, test data set, labels) for the chosen data."""
    from lfdm.data.factory import describe_dataset, make_dataset

    described = describe_dataset(args.data)
    common = {
        "root": args.data_root,
        "label_from": args.label_from,
        "resolution": args.resolution or described.resolution,
        "num_frames": args.video_frames or described.num_frames,
        "seed": args.data_seed,
        "labels": args.labels,
    }
    # real videos: fresh frames and augmentation in every training clip, reproducible from draw_seed
    train = make_dataset(
        args.data, split="train", length=args.pool_size, frame_sampling="random", augment=True, draw_seed=0, **common
    )
    test = make_dataset(args.data, split="test", num_identities=args.test_identities, **common)
    return train, test, list(train.labels)


def run(args: argparse.Namespace) -> int:
    import torch

    from lfdm.evaluation.accuracy import classify_dataset
    from lfdm.evaluation.classifier import ActionClassifier
    from lfdm.evaluation.classifier_card import model_card
    from lfdm.evaluation.train_classifier import ClassifierTrainConfig, build_clip_pool, train_classifier

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lfdm").setLevel(logging.INFO)
    torch.set_num_threads(max(1, args.threads))
    channels = tuple(int(width) for width in args.channels.split(","))
    config = ClassifierTrainConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed
    )
    started, cpu_started = time.perf_counter(), time.process_time()

    train_data, test_data, labels = _datasets(args)
    torch.manual_seed(args.seed)
    classifier = ActionClassifier(
        labels=labels, num_frames=args.num_frames, input_size=args.input_size, channels=channels
    )
    pool_size = max(args.pool_size, len(train_data))
    pool = build_clip_pool(train_data, classifier, pool_size)
    print(f"{len(pool)} training clips read in {time.perf_counter() - started:.0f} s")
    history = train_classifier(classifier, pool, config)
    print(f"trained {config.steps} steps in {history.seconds:.0f} s")
    report = classify_dataset(classifier, test_data).accuracy_report()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(report.table())
    print(f"test accuracy {report.accuracy:.4f} on {report.count} real test videos; {wall / 60:.1f} min in all")

    out = Path(args.out)
    classifier.save_pretrained(out)
    summary = {
        "command": command_line(args),
        "data": args.data,
        "data_root": args.data_root,
        "labels": labels,
        "pool_size": len(pool),
        "video_size": {"resolution": train_data.resolution, "num_frames": train_data.num_frames},
        "num_parameters": sum(p.numel() for p in classifier.parameters()),
        "classifier_config": {key: classifier.config[key] for key in ("num_frames", "input_size", "channels")},
        "train_config": vars(config),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "final_train_loss": history.losses[-1],
        "test": report.to_dict(),
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"classifier written to {out}")
    card = Path(args.card) if args.card else out.parent / "README.md"
    if args.card != "none":
        card.write_text(model_card(summary, out))
        print(f"model card written to {card}")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces a run: the options that differ from their defaults."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    options = []
    for name, value in vars(args).items():
        if name in defaults and value != defaults[name]:
            values = value if isinstance(value, (list, tuple)) else [value]  # nargs="+" options: one word each
            options += [f"--{name.replace('_', '-')}", *map(str, values)]
    return shlex.join(["python", "-m", "lfdm", "train-classifier", *options])
