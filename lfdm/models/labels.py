"""Labels -> condition vectors for the diffusion model (the class condition y of LFDM, Sec. 3.2).

The paper embeds each class name with a frozen BERT (`bert-base-cased`): the mean of the last hidden layer over
the tokens after [CLS] (padding excluded, [SEP] included). With a closed label set that is a fixed lookup table,
which `python -m lfdm embed-labels` computes once and `LabelEncoder.from_embedding_file` loads; our own models
learn their table instead. The null embedding for classifier-free guidance is not here: it lives in the U-Net
(`FlowUNet3D.null_label_embedding`), so that a learned one is saved and trained with the network that uses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file, save_file
from torch import nn

TEXT_ENCODER = "bert-base-cased"
TABLE_KEY = "embeddings"


class LabelEncoder(ModelMixin, ConfigMixin):
    """A closed, ordered set of labels, each mapped to a vector of `embedding_dim`.

    Args:
        labels: the label strings, in class-index order (unique, non-empty).
        embedding_dim: width of the vectors (768 for the BERT embeddings of the released models).
        learned: a trainable table (`nn.Embedding`, N(0, 1) init) if True; else a fixed buffer, filled by
            `from_table` / `from_embedding_file` (all zeros until then).
    """

    @register_to_config
    def __init__(self, labels: Sequence[str], embedding_dim: int = 768, learned: bool = True):
        super().__init__()
        labels = list(labels)
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise ValueError(f"`labels` must be a non-empty list of non-empty strings; got {labels!r}.")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"`labels` must be unique; {duplicates} appear more than once.")
        self._index = {label: i for i, label in enumerate(labels)}
        if learned:
            self.embedding = nn.Embedding(len(labels), embedding_dim)
        else:
            self.register_buffer("embedding_table", torch.zeros(len(labels), embedding_dim))

    @property
    def labels(self) -> tuple[str, ...]:
        """The label strings in class-index order."""
        return tuple(self.config.labels)

    @property
    def vectors(self) -> torch.Tensor:
        """The whole table (num_labels, embedding_dim)."""
        return self.embedding.weight if self.config.learned else self.embedding_table

    def indices(self, labels: str | Sequence[str]) -> torch.Tensor:
        """Class indices (B,) int64 of `labels` (one string or a list); ValueError for an unknown label."""
        labels = [labels] if isinstance(labels, str) else list(labels)
        unknown = [label for label in labels if label not in self._index]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; this model knows {list(self.labels)}.")
        return torch.tensor([self._index[label] for label in labels], dtype=torch.long, device=self.vectors.device)

    def forward(self, labels: str | Sequence[str]) -> torch.Tensor:
        """labels (one string or B strings) -> (B, embedding_dim) vectors."""
        return self.vectors[self.indices(labels)]

    @classmethod
    def from_table(cls, labels: Sequence[str], table: torch.Tensor) -> LabelEncoder:
        """A fixed encoder holding `table` (num_labels, embedding_dim), row i for `labels[i]`."""
        if table.ndim != 2 or table.shape[0] != len(labels):
            raise ValueError(f"`table` must be ({len(labels)}, embedding_dim) for {len(labels)} labels; got "
                             f"{tuple(table.shape)}.")  # fmt: skip
        encoder = cls(labels=list(labels), embedding_dim=table.shape[1], learned=False)
        encoder.embedding_table.copy_(table.detach().float())
        return encoder

    @classmethod
    def from_embedding_file(cls, path: str | os.PathLike) -> LabelEncoder:
        """A fixed encoder from a file written by `python -m lfdm embed-labels` (`save_label_table`)."""
        return cls.from_table(*load_label_table(path))


def save_label_table(path: str | os.PathLike, labels: Sequence[str], table: torch.Tensor, **metadata: str) -> Path:
    """Write a label table (num_labels, D) to a safetensors file; the labels (JSON) and `metadata` go in its header."""
    if table.shape[0] != len(labels):
        raise ValueError(f"{len(labels)} labels but {table.shape[0]} table rows.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**{key: str(value) for key, value in metadata.items()}, "labels": json.dumps(list(labels))}
    save_file({TABLE_KEY: table.detach().float().cpu().contiguous()}, str(path), metadata=header)
    return path


def load_label_table(path: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """(labels, table (num_labels, D)) from a file written by `save_label_table`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label table {str(path)!r} does not exist; make it with `python -m lfdm embed-labels`."
        )
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "labels" not in metadata:
        raise ValueError(f"{str(path)!r} has no label list in its header; it was not written by `embed-labels`.")
    return json.loads(metadata["labels"]), load_file(str(path))[TABLE_KEY]


def masked_mean_embedding(hidden: torch.Tensor, token_ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """The paper's sentence embedding: hidden (B, L, D), token_ids (B, L) -> (B, D).

    Mean over tokens 1..L-1 that are not padding: [CLS] (token 0) is excluded, [SEP] is included. The 1e-8 in
    the denominator is the original's.
    """
    mask = (token_ids[:, 1:] != pad_id).unsqueeze(-1).to(hidden.dtype)
    return (hidden[:, 1:] * mask).sum(dim=1) / (mask.sum(dim=1) + 1e-8)


@torch.no_grad()
def text_label_embeddings(labels: Sequence[str], tokenizer, text_model) -> torch.Tensor:
    """Embed each label with a BERT-like `text_model` and its `tokenizer` -> (num_labels, hidden size).

    Labels are embedded one at a time (no padding), as the paper's demos embed the one label they generate.
    `tokenizer(texts, ...)` must return `input_ids`; `text_model(ids, attention_mask=..., output_hidden_states=True)`
    must return `hidden_states` (the `transformers` conventions).
    """
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    rows = []
    for label in labels:
        token_ids = tokenizer([label], add_special_tokens=True, padding=True, return_tensors="pt")["input_ids"]
        output = text_model(token_ids, attention_mask=(token_ids != pad_id).long(), output_hidden_states=True)
        rows.append(masked_mean_embedding(output.hidden_states[-1], token_ids, pad_id))
    return torch.cat(rows).float()


def load_text_encoder(name: str = TEXT_ENCODER):
    """(tokenizer, model) of a Hugging Face text encoder, by hub id or local folder; needs `transformers`."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            "computing label embeddings needs the `transformers` package, which lfdm does not install by default: "
            "pip install transformers  (or: pip install 'lfdm[text]')"
        ) from error
    tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    model = transformers.AutoModel.from_pretrained(name).eval()
    return tokenizer, model
