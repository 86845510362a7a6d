"""`python -m lfdm evaluate`: action accuracy, Fréchet classifier distance and identity metrics of generated videos.

    python -m lfdm evaluate --model checkpoints --classifier checkpoints/eval/action_classifier \
        --num-identities 10 --configs "ddpm:1000,ddim:50,dpmsolver:25,dpmsolver:10" --guidance 1.0,2.0 \
        --out benchmarks/evaluation.json --markdown benchmarks/evaluation.md
    python -m lfdm evaluate --model checkpoints/mug --classifier checkpoints/eval/mug_classifier \
        --data mug --data-root /data/MUG --max-videos 200 --i3d-weights i3d_torchscript.pt --out mug.json

Each config is `scheduler[:steps[:guidance]]` (without steps: the model's default count for that scheduler) and
runs with every `--guidance` unless it names its own. DDPM with 1000 steps takes minutes per video on a CPU: use a
few identities there, or a GPU. The JSON record holds the arguments and every score
(`lfdm.evaluation.generation.GenerationEvaluation`); `--markdown` writes the table for `benchmarks/RESULTS.md`.
`--choose-default` then picks the fewest steps as good as the setting with the most steps (`python -m lfdm
choose-default`), and `--write-default` saves that choice into the `--model` folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lfdm.commands._data import add_data_arguments
from lfdm.commands.options import add_device_arguments
from lfdm.data.factory import describe_dataset, make_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="pipeline folder (save_pretrained) or Hugging Face repo id")
    parser.add_argument(
        "--classifier", default="checkpoints/eval/action_classifier", help="ActionClassifier save_pretrained folder"
    )
    add_data_arguments(parser, "test videos")
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace test identities (x every label)")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="SynthFace: the labels to generate and judge (default: every label the model knows); e.g. a model "
        "taught a new action judged on its old ones with the classifier that knows those",
    )
    parser.add_argument("--max-videos", type=int, help="real data: evaluate at most this many test videos")
    parser.add_argument("--data-seed", type=int, default=0, help="SynthFace data set seed (identity split)")
    parser.add_argument(
        "--configs", default="ddpm:1000,ddim:50,dpmsolver:25,dpmsolver:10", help="samplers: scheduler[:steps[:g]],..."
    )
    parser.add_argument("--guidance", default="1.0,2.0", help="guidance scales, comma-separated (1.0 = none)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (the same video for every sampler)")
    parser.add_argument("--batch-size", type=int, default=8, help="labels sampled together in one batch")
    parser.add_argument("--i3d-weights", help="I3D TorchScript file (i3d_torchscript.pt): also report FVD")
    add_device_arguments(parser)
    parser.add_argument("--out", default="evaluation.json", help="JSON file for the scores")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument(
        "--choose-default", action="store_true", help="choose the model's default steps from these scores"
    )
    parser.add_argument(
        "--write-default", action="store_true", help="with --choose-default: write the choice into the --model folder"
    )


def _cases(args: argparse.Namespace, pipe):
    """(test cases, reference cases of the floor, description of the data)."""
    from lfdm.evaluation.generation import dataset_cases, synthface_cases

    if describe_dataset(args.data).rendered:  # SynthFace, the one rendered data set: identities x labels
        common = {"resolution": pipe.image_size, "num_frames": pipe.num_frames, "seed": args.data_seed}
        labels = list(args.labels or pipe.labels)
        unknown = [label for label in labels if label not in pipe.labels]
        if unknown:
            raise ValueError(f"--labels {unknown} are not labels of the model; it knows {list(pipe.labels)}.")
        test = synthface_cases("test", args.num_identities, labels=labels, **common)
        train = synthface_cases("train", args.num_identities, labels=labels, **common)
        return test, train, f"SynthFace, {args.num_identities} test identities x {len(labels)} labels"
    common = {
        "root": args.data_root,
        "label_from": args.label_from,
        "resolution": pipe.image_size,
        "num_frames": pipe.num_frames,
        "labels": pipe.labels,
    }
    test = make_dataset(args.data, split="test", **common)
    train = make_dataset(args.data, split="train", **common)
    count = min(len(test), args.max_videos or len(test))
    # the floor compares as many training videos with the test videos
    test_cases = dataset_cases(test, max_videos=count)
    return test_cases, dataset_cases(train, max_videos=count), f"{args.data} test split, {count} videos"


def run(args: argparse.Namespace) -> int:
    import torch

    from lfdm.evaluation.classifier import ActionClassifier
    from lfdm.evaluation.frechet import load_i3d
    from lfdm.evaluation.generation import evaluate_generation, parse_sampler_settings
    from lfdm.pipeline import load_pipeline
    from lfdm.runtime import dtype_name
    from lfdm.schedulers import default_steps, make_scheduler

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lfdm.evaluation").setLevel(logging.INFO)
    if args.num_identities < 2:
        raise ValueError(
            f"--num-identities must be at least 2 (a Fréchet distance needs 2); got {args.num_identities}."
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}.")
    if args.write_default and not args.choose_default:
        raise ValueError("--write-default writes the choice of --choose-default; pass both.")
    parse_sampler_settings(args.configs, args.guidance)  # refuse a bad config before the model loads
    if not (Path(args.classifier) / "config.json").is_file():
        raise FileNotFoundError(
            f"no classifier at {args.classifier} (no config.json); train one with python -m lfdm train-classifier."
        )
    pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype)
    # a config without steps samples the model's own default count for that sampler
    model_steps = lambda name: default_steps(make_scheduler(name, base_config=pipe.scheduler.config))
    settings = parse_sampler_settings(args.configs, args.guidance, default_steps=model_steps)
    pipe.set_progress_bar_config(disable=True)
    classifier = ActionClassifier.from_pretrained(args.classifier).to(pipe.device).eval()
    i3d = load_i3d(args.i3d_weights, device=pipe.device) if args.i3d_weights else None
    test, reference, description = _cases(args, pipe)
    print(f"evaluating {len(settings)} samplers on {description} ({pipe.device})")
    if pipe.device.type == "cpu" and any(s.steps * (1 + (s.guidance != 1)) >= 500 for s in settings):
        print("note: samplers with hundreds of steps take minutes per video on a CPU; keep --num-identities small")
    evaluation = evaluate_generation(
        pipe, classifier, test, reference, settings, seed=args.seed, batch_size=args.batch_size, i3d=i3d
    )
    precision = dtype_name(pipe.unet.dtype)
    evaluation.notes.insert(
        0, f"data: {description}; seed {args.seed}; threads {torch.get_num_threads()}; networks in {precision}"
    )
    print(evaluation.table())
    record = {
        "model": str(args.model),
        "classifier": str(args.classifier),
        "data": args.data,
        "data_root": args.data_root,
        "num_identities": args.num_identities if describe_dataset(args.data).rendered else None,
        "seed": args.seed,
        "dtype": precision,
        "frechet_distance": "FCD: Frechet distance between ActionClassifier features (not FVD, which uses I3D)",
    }
    record |= evaluation.to_dict()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"scores written to {args.out}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(evaluation.markdown())
        print(f"markdown table written to {args.markdown}")
    if args.choose_default:
        from lfdm.commands.choose_default import report_choice

        print()
        return report_choice(record["samplers"], args.model, write=args.write_default)
    return 0
