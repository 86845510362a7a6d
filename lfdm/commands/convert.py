"""`python -m lfdm convert`: the authors' released checkpoints -> a pipeline folder that `from_pretrained` loads.

    python -m lfdm embed-labels --labels mug --out mug_labels.safetensors      # once; needs transformers + BERT
    python -m lfdm convert --lfae RegionMM_0005_S111600.pth --dm flowdiff_0005_S111600.pth --preset mug \
        --label-embeddings mug_labels.safetensors --out checkpoints/lfdm-mug128

`--preset mug|mhad|natops` takes every size from `lfdm/configs/<preset>128.yaml`. Checkpoints of other sizes give
the authors' constructor arguments instead: `--lfae-params` (their YAML's `model_params`) with `--image-size`, and
`--unet-params` (their `Unet3D` arguments), each a JSON file or a JSON string, plus `--num-frames`. The scheduler
is the paper's (1000-step DDPM with dynamic thresholding); swap it at sampling time.

The folder records how the model's pictures are framed (`lfdm.framing`), so that a photo is framed the same way:
MUG's faces aligned like its crops, MHAD's and NATOPS's whole pictures. `--framing` gives it for checkpoints
without a preset (default: the whole picture) or overrides the preset's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PRESETS = ("mug", "mhad", "natops")
FRAMINGS = ("mug", "whole")  # lfdm.framing.MUG_FRAMING (aligned faces) | WHOLE_PICTURE
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lfae", required=True, help="the released LFAE checkpoint (RegionMM_*.pth)")
    parser.add_argument("--dm", required=True, help="the released diffusion checkpoint (flowdiff_*.pth)")
    parser.add_argument("--preset", choices=PRESETS, help="sizes and labels of the paper's 128 px model")
    parser.add_argument("--label-embeddings", required=True, help="label table from `python -m lfdm embed-labels`")
    parser.add_argument("--out", required=True, help="output pipeline folder")
    parser.add_argument("--lfae-params", help="instead of --preset: the authors' `model_params` (JSON or file)")
    parser.add_argument("--unet-params", help="instead of --preset: the authors' `Unet3D` arguments (JSON or file)")
    parser.add_argument("--image-size", type=int, help="frame side in px (default: the preset's, else 128)")
    parser.add_argument("--num-frames", type=int, help="frames per video (default: the preset's, else 40)")
    parser.add_argument(
        "--framing", choices=FRAMINGS, help="how the training pictures were framed: faces aligned like MUG's crops, "
        "or the whole picture (default: the preset's data set, else whole)"
    )  # fmt: skip


def read_json_option(value: str, option: str) -> dict:
    """A JSON object given inline or as the path of a .json file."""
    if value.lstrip().startswith("{"):
        text = value
    elif Path(value).is_file():
        text = Path(value).read_text()
    else:
        raise FileNotFoundError(f"{option} {value!r} is neither a JSON object nor an existing JSON file.")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{option} must be a JSON object or the path of a JSON file; could not parse {value!r}."
        ) from error
    if not isinstance(parsed, dict):
        raise ValueError(f"{option} must be a JSON object; got {type(parsed).__name__}.")
    return parsed


def official_unet_params(unet: dict) -> dict:
    """Our `FlowUNet3D` arguments (a config's `unet` section) -> the authors' `Unet3D` arguments."""
    return {
        "dim": unet["dim"],
        "dim_mults": list(unet["dim_mults"]),
        "channels": unet.get("sample_channels", 3) + unet["feature_channels"],
        "attn_heads": unet["attn_heads"],
        "attn_dim_head": unet["attn_dim_head"],
        "init_kernel_size": unet["init_kernel_size"],
        "resnet_groups": unet["resnet_groups"],
        "learn_null_cond": unet["learn_null_label"],
        "use_deconv": unet["upsample"] == "deconv",
        "padding_mode": unet["padding_mode"],
    }


def resolve_models(args: argparse.Namespace):
    """(lfae, unet, expected labels or None) from --preset or from the authors' parameters."""
    from lfdm.labelsets import label_set
    from lfdm.models.lfae import LatentFlowAutoencoder
    from lfdm.released_checkpoints import (
        lfae_state_dict_from_official,
        load_official_lfae,
        load_official_unet,
        load_state_dict_strict,
    )

    if args.preset and (args.lfae_params or args.unet_params):
        raise ValueError("give either --preset or --lfae-params with --unet-params, not both.")
    if args.preset:
        from lfdm.training.config import load_config

        config = load_config(CONFIG_DIR / f"{args.preset}128.yaml")
        lfae = LatentFlowAutoencoder(**config.lfae)
        load_state_dict_strict(lfae, lfae_state_dict_from_official(args.lfae), source=f"checkpoint {args.lfae!r}")
        unet = load_official_unet(args.dm, official_unet_params(config.unet))
        mismatched = {key: value for key, value in config.unet.items() if key not in ("num_frames", "sample_size")
                      and unet.config[key] != (tuple(value) if isinstance(value, list) else value)}  # fmt: skip
        if mismatched:
            raise ValueError(
                f"the {args.preset} preset's unet settings {mismatched} are not what the checkpoint holds."
            )
        return lfae.eval(), unet, config.data.num_frames, list(label_set(config.data.dataset))
    if not (args.lfae_params and args.unet_params):
        raise ValueError("give --preset mug|mhad|natops, or both --lfae-params and --unet-params for other sizes.")
    lfae = load_official_lfae(
        args.lfae, read_json_option(args.lfae_params, "--lfae-params"), image_size=args.image_size or 128
    )
    unet = load_official_unet(args.dm, read_json_option(args.unet_params, "--unet-params"))
    return lfae, unet, 40, None


def run(args: argparse.Namespace) -> int:
    from lfdm.models.labels import LabelEncoder
    from lfdm.pipeline import LFDMPipeline
    from lfdm.schedulers import make_training_scheduler

    for option, path in (("--lfae", args.lfae), ("--dm", args.dm), ("--label-embeddings", args.label_embeddings)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{option} {path!r} does not exist.")
    if args.preset and args.image_size:
        raise ValueError("--image-size goes with --lfae-params; a preset fixes the image size.")
    lfae, unet, preset_frames, expected_labels = resolve_models(args)
    num_frames = args.num_frames or preset_frames
    if num_frames < 1:
        raise ValueError(f"--num-frames must be at least 1; got {num_frames}.")
    # The frame count and latent size a video is generated with by default live in the U-Net's config.
    unet.register_to_config(num_frames=num_frames, sample_size=lfae.latent_size)
    lfae.register_to_config(framing=model_framing(args).to_config())  # how a photo is framed for this model

    label_encoder = LabelEncoder.from_embedding_file(args.label_embeddings)
    check_labels(label_encoder, unet, expected_labels, args.preset)
    pipe = LFDMPipeline(lfae=lfae, unet=unet, scheduler=make_training_scheduler(), label_encoder=label_encoder.eval())
    pipe.save_pretrained(args.out)
    print(
        f"wrote {args.out}: {lfae.config.image_size} px, {num_frames} frames, {len(pipe.labels)} labels, "
        f"{'aligned faces' if pipe.framing.is_face else 'whole pictures'}; "
        f"load it with LFDMPipeline.from_pretrained({str(args.out)!r}) or python -m lfdm generate --model {args.out}"
    )
    return 0


def model_framing(args: argparse.Namespace):
    """The `lfdm.framing.ModelFraming` the converted model saves: --framing, else its preset data set's, else the
    whole picture."""
    from lfdm.framing import DATASET_FRAMINGS, WHOLE_PICTURE

    name = args.framing or args.preset
    return WHOLE_PICTURE if name in (None, "whole") else DATASET_FRAMINGS[name]


def check_labels(label_encoder, unet, expected_labels: list[str] | None, preset: str | None) -> None:
    """The label table must fit the U-Net, and a preset's table must hold exactly the preset's labels."""
    if label_encoder.config.embedding_dim != unet.config.label_dim:
        raise ValueError(
            f"the label table is {label_encoder.config.embedding_dim} wide but the U-Net takes "
            f"{unet.config.label_dim}-d labels; the released models need the 768-d bert-base-cased table."
        )
    if expected_labels is not None and sorted(label_encoder.labels) != sorted(expected_labels):
        missing = sorted(set(expected_labels) - set(label_encoder.labels))
        extra = sorted(set(label_encoder.labels) - set(expected_labels))
        raise ValueError(
            f"the label table does not match the {preset} labels (missing {missing}, unexpected {extra}); "
            f"make it with `python -m lfdm embed-labels --labels {preset}`."
        )
