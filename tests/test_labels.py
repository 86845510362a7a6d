"""Label sets, the label encoder, and the official BERT label embeddings (`embed-labels`)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from lfdm.cli import main as cli_main
from lfdm.commands import embed_labels
from lfdm.labelsets import LABEL_SETS, label_set
from lfdm.models.labels import (
    LabelEncoder,
    load_label_table,
    masked_mean_embedding,
    save_label_table,
    text_label_embeddings,
)

LABELS = ["anger", "happiness", "surprise"]


def test_label_sets_have_the_official_sizes_and_strings():
    assert {name: len(labels) for name, labels in LABEL_SETS.items()} == {"mug": 7, "mhad": 27, "natops": 24}
    for labels in LABEL_SETS.values():
        assert len(set(labels)) == len(labels)
    assert LABEL_SETS["mug"][3] == "happiness"
    assert "sit to stand" in LABEL_SETS["mhad"] and LABEL_SETS["mhad"][-1] == "squat"
    assert LABEL_SETS["natops"][0] == "I Have Command" and LABEL_SETS["natops"][-1] == "Cut Engine"
    with pytest.raises(ValueError, match="mhad"):
        label_set("kinetics")


def test_learned_encoder_maps_labels_to_trainable_vectors():
    encoder = LabelEncoder(labels=LABELS)
    vectors = encoder(["surprise", "anger", "surprise"])
    assert vectors.shape == (3, 768)
    torch.testing.assert_close(vectors[0], vectors[2])
    assert not torch.equal(vectors[0], vectors[1])
    vectors.sum().backward()
    assert encoder.embedding.weight.grad is not None
    assert encoder("happiness").shape == (1, 768), "one string is a batch of one"


def test_indices_follow_label_order():
    encoder = LabelEncoder(labels=LABELS)
    assert encoder.indices(["surprise", "anger"]).tolist() == [2, 0]
    assert encoder.labels == tuple(LABELS)


def test_unknown_label_error_lists_the_valid_ones():
    encoder = LabelEncoder(labels=LABELS, learned=False)
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['joy'\].*'anger', 'happiness', 'surprise'"):
        encoder(["anger", "joy"])


def test_invalid_label_lists_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        LabelEncoder(labels=["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        LabelEncoder(labels=[])


def test_fixed_table_is_used_verbatim_and_not_trained():
    table = torch.randn(3, 8)
    encoder = LabelEncoder.from_table(LABELS, table)
    torch.testing.assert_close(encoder(["surprise", "anger"]), table[[2, 0]], rtol=0, atol=0)
    assert list(encoder.parameters()) == []
    with pytest.raises(ValueError, match=r"\(3, embedding_dim\)"):
        LabelEncoder.from_table(LABELS, torch.zeros(2, 8))


@pytest.mark.parametrize("learned", [True, False])
def test_encoder_round_trips_through_save_pretrained(tmp_path, learned):
    encoder = LabelEncoder(labels=LABELS, embedding_dim=16, learned=learned)
    if not learned:
        encoder.embedding_table.copy_(torch.randn(3, 16))
    encoder.save_pretrained(tmp_path)
    loaded = LabelEncoder.from_pretrained(tmp_path)
    assert loaded.labels == tuple(LABELS) and loaded.config.learned == learned
    torch.testing.assert_close(loaded(LABELS), encoder(LABELS).detach(), rtol=0, atol=0)


def test_label_table_file_round_trip(tmp_path):
    table = torch.randn(3, 768)
    path = save_label_table(tmp_path / "sub" / "labels.safetensors", LABELS, table, model="tiny")
    labels, loaded = load_label_table(path)
    assert labels == LABELS
    torch.testing.assert_close(loaded, table, rtol=0, atol=0)
    torch.testing.assert_close(LabelEncoder.from_embedding_file(path)(LABELS), table, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="embed-labels"):
        load_label_table(tmp_path / "missing.safetensors")


# --- the official pooling -----------------------------------------------------------------------------------------


def test_masked_mean_skips_cls_and_padding_but_keeps_sep():
    # tokens: [CLS]=2, words 5 and 6, [SEP]=3, then padding 0; hidden feature = the token id
    token_ids = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]])
    hidden = token_ids[..., None].float().repeat(1, 1, 4)
    pooled = masked_mean_embedding(hidden, token_ids)
    torch.testing.assert_close(pooled[:, 0], torch.tensor([(5 + 6 + 3) / 3, (7 + 3) / 2]))


class FakeTokenizer:
    """Word-level stand-in: [CLS]=2 + one id per word + [SEP]=3, padding 0."""

    pad_token_id = 0

    def __call__(self, texts, add_special_tokens=True, padding=True, return_tensors="pt"):
        assert add_special_tokens and return_tensors == "pt"
        rows = [[2] + [10 + len(word) for word in text.split()] + [3] for text in texts]
        width = max(map(len, rows))
        return {"input_ids": torch.tensor([row + [0] * (width - len(row)) for row in rows])}


class FakeTextModel:
    """Hidden state of a token = (its id, its position, 1); records the attention masks it was given."""

    def __init__(self):
        self.masks = []

    def __call__(self, token_ids, attention_mask=None, output_hidden_states=False):
        self.masks.append(attention_mask)
        positions = torch.arange(token_ids.shape[1]).expand_as(token_ids)
        hidden = torch.stack([token_ids.float(), positions.float(), torch.ones_like(positions).float()], dim=-1)
        return SimpleNamespace(hidden_states=(hidden * 0, hidden))


def test_text_label_embeddings_pool_each_label_alone():
    model = FakeTextModel()
    table = text_label_embeddings(["wave", "big jump"], FakeTokenizer(), model)
    # "wave": tokens [2, 14, 3] -> mean over (14, 3); "big jump": [2, 13, 14, 3] -> mean over (13, 14, 3)
    torch.testing.assert_close(table[:, 0], torch.tensor([(14 + 3) / 2, (13 + 14 + 3) / 3]))
    torch.testing.assert_close(table[:, 1], torch.tensor([(1 + 2) / 2, (1 + 2 + 3) / 3]))
    assert [mask.tolist() for mask in model.masks] == [[[1, 1, 1]], [[1, 1, 1, 1]]], "one label per call, no padding"


def test_embed_labels_command_writes_a_loadable_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(embed_labels, "load_text_encoder", lambda name: (FakeTokenizer(), FakeTextModel()))
    out = tmp_path / "mug.safetensors"
    assert cli_main(["embed-labels", "--labels", "mug", "--out", str(out)]) == 0
    labels, table = load_label_table(out)
    assert labels == list(LABEL_SETS["mug"]) and table.shape == (7, 3)
    assert "wrote 7 label embeddings" in capsys.readouterr().out


def test_embed_labels_takes_free_label_strings():
    assert embed_labels.resolve_labels(["natops"]) == list(LABEL_SETS["natops"])
    assert embed_labels.resolve_labels(["wave", "jump"]) == ["wave", "jump"]


def test_embed_labels_without_transformers_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    assert cli_main(["embed-labels", "--labels", "mug", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "pip install transformers" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_tiny_bert_embeddings_match_a_padded_batch(tmp_path):
    """With a real (tiny, random) BERT: one-at-a-time pooling equals the masked pooling of a padded batch."""
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "anger", "happiness", "draw", "circle", "clockwise"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(tmp_path), do_lower_case=False)  # local folder
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model = transformers.BertModel(config).eval()
    labels = ["anger", "draw circle clockwise"]
    table = text_label_embeddings(labels, tokenizer, model)
    assert table.shape == (2, 32)
    batch = tokenizer(labels, add_special_tokens=True, padding=True, return_tensors="pt")["input_ids"]
    assert batch[0].tolist() == [2, 5, 3, 0, 0], "the short label is padded in the batch"
    with torch.no_grad():
        hidden = model(batch, attention_mask=(batch != 0).long(), output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(masked_mean_embedding(hidden, batch), table, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(table[0], hidden[0, 1:3].mean(dim=0), atol=1e-5, rtol=1e-5)
