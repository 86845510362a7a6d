"""`python -m lfdm embed-labels`: the official BERT label embeddings, computed once and saved as a table.

    python -m lfdm embed-labels --labels mug --out mug_labels.safetensors
    python -m lfdm embed-labels --labels "wave" "jump" --out my_labels.safetensors

`--labels` is a preset (mug, mhad, natops: the exact strings the released models were trained with) or the label
strings themselves. Needs `pip install transformers` and the `bert-base-cased` weights (downloaded from the
Hugging Face Hub on first use, or a local folder given with `--model`). The output holds the table `embeddings`
(num_labels, 768) and the labels in its header; `LabelEncoder.from_embedding_file` loads it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lfdm.labelsets import LABEL_SETS
from lfdm.models.labels import TEXT_ENCODER, load_text_encoder, save_label_table, text_label_embeddings

POOLING = "mean of the last hidden layer over tokens after [CLS], padding excluded, [SEP] included"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels",
        nargs="+",
        required=True,
        help=f"a label-set preset ({', '.join(sorted(LABEL_SETS))}) or the label strings themselves",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    parser.add_argument(
        "--model",
        default=TEXT_ENCODER,
        help="text encoder: Hugging Face model id or local folder (default: %(default)s)",
    )


def resolve_labels(names: list[str]) -> list[str]:
    """One preset name -> its labels; anything else is taken as the label strings."""
    if len(names) == 1 and names[0] in LABEL_SETS:
        return list(LABEL_SETS[names[0]])
    return list(names)


def run(args: argparse.Namespace) -> int:
    labels = resolve_labels(args.labels)
    try:
        tokenizer, text_model = load_text_encoder(args.model)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = text_label_embeddings(labels, tokenizer, text_model)
    path = save_label_table(args.out, labels, table, model=args.model, pooling=POOLING)
    print(f"wrote {len(labels)} label embeddings of width {table.shape[1]} to {path}")
    return 0
