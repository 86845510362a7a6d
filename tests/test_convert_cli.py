"""`python -m lfdm convert` on the official-format parity fixtures: the folder loads, keeps the official numbers and
generates. Sizes come from `tests/fixtures/official_parity/config.json`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from lfdm.cli import main
from lfdm.commands import convert as convert_command
from lfdm.commands.convert import CONFIG_DIR, PRESETS, check_labels, official_unet_params
from lfdm.framing import MUG_FRAMING, WHOLE_PICTURE
from lfdm.models.labels import LabelEncoder, save_label_table
from lfdm.pipeline import LFDMPipeline
from lfdm.released_checkpoints import unet_config_from_official
from lfdm.training.config import load_config

PARITY = Path(__file__).parent / "fixtures" / "official_parity"
SETUP = json.loads((PARITY / "config.json").read_text())
VARIANTS = {"mug": ("dm_official.pth", "Unet3D_mug", "dm_io.safetensors"),
            "natops": ("dm_official_natops_variant.pth", "Unet3D_natops", "dm_io_natops.safetensors")}  # fmt: skip
LABELS = ["wave", "nod", "shrug"]
ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def label_table(tmp_path_factory) -> Path:
    table = torch.randn(len(LABELS), SETUP["dm"]["cond_dim"], generator=torch.Generator().manual_seed(0))
    return save_label_table(tmp_path_factory.mktemp("labels") / "labels.safetensors", LABELS, table)


def convert_argv(variant: str, label_table: Path, out: Path, params_file: Path) -> list[str]:
    checkpoint, unet_key, _ = VARIANTS[variant]
    params_file.write_text(json.dumps(SETUP["lfae"]["model_params"]))
    return ["convert", "--lfae", str(PARITY / "lfae_official.pth"), "--dm", str(PARITY / checkpoint),
            "--label-embeddings", str(label_table), "--out", str(out), "--lfae-params", str(params_file),
            "--unet-params", json.dumps(SETUP["dm"][unet_key]), "--image-size", str(SETUP["lfae"]["image_size"]),
            "--num-frames", str(SETUP["dm"]["num_frames"]),
            *(["--framing", "mug"] if variant == "mug" else [])]  # fmt: skip


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def converted(request, label_table, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"converted_{request.param}")
    argv = convert_argv(request.param, label_table, folder / "pipeline", folder / "model_params.json")
    assert main(argv) == 0
    return request.param, folder / "pipeline"


def test_converted_folder_loads_offline_with_the_official_numbers(converted, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; set it too
    variant, folder = converted
    pipe = LFDMPipeline.from_pretrained(folder)
    assert pipe.labels == LABELS and pipe.num_frames == SETUP["dm"]["num_frames"]
    assert pipe.image_size == SETUP["lfae"]["image_size"] and pipe.latent_size == SETUP["dm"]["latent_size"]
    assert pipe.scheduler.config.num_train_timesteps == 1000 and pipe.scheduler.config.thresholding
    lfae_io = load_file(PARITY / "lfae_io.safetensors")
    dm_io = load_file(PARITY / VARIANTS[variant][2])
    with torch.no_grad():
        features = pipe.lfae.encode(lfae_io["in.source"])
        torch.testing.assert_close(features, lfae_io["out.generator.compute_fea"], atol=1e-4, rtol=1e-4)
        noise = pipe.unet(dm_io["in.x_t"], dm_io["in.t"], dm_io["in.fea"], dm_io["in.cond"]).sample
        torch.testing.assert_close(noise, dm_io["out.unet.eps_cond"], atol=1e-4, rtol=1e-4)
        null_noise = pipe.unet(dm_io["in.x_t"], dm_io["in.t"], dm_io["in.fea"], None).sample
        torch.testing.assert_close(null_noise, dm_io["out.unet.eps_null"], atol=1e-4, rtol=1e-4)


def test_converted_pipeline_generates_two_steps(converted, tiny_image):
    _, folder = converted
    pipe = LFDMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(tiny_image, ["wave", "shrug"], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    frames, size = SETUP["dm"]["num_frames"], SETUP["lfae"]["image_size"]
    assert out.frames.shape == (2, frames, size, size, 3) and np.isfinite(out.frames).all()


def test_converted_folders_record_their_framing_and_follow_it(converted):
    """--framing mug: faces aligned like MUG's crops; no preset and no --framing: the whole picture, so a photo with
    a face is animated whole by default."""
    variant, folder = converted
    pipe = LFDMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.framing == (MUG_FRAMING if variant == "mug" else WHOLE_PICTURE)
    out = pipe(ASTRONAUT, "wave", num_inference_steps=1)
    assert (out.face_box is not None) == (variant == "mug"), "face='auto' follows the model's framing"


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_translate_to_the_official_unet_arguments_and_back(preset):
    unet = load_config(CONFIG_DIR / f"{preset}128.yaml").unet
    back = unet_config_from_official(official_unet_params(unet))
    assert {key: value for key, value in back.items()} == {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in unet.items()
        if key not in ("num_frames", "sample_size")
    }


@pytest.mark.parametrize("preset", ["mug", "natops"])
def test_preset_path_with_a_small_preset_file(preset, tmp_path, monkeypatch):
    """The --preset route end to end, with a preset YAML of the fixture's sizes in place of the 128 px one; MUG
    records aligned faces, NATOPS the whole picture."""
    from lfdm.labelsets import label_set
    from lfdm.released_checkpoints import lfae_config_from_official

    checkpoint, unet_key, _ = VARIANTS[preset]
    labels = list(label_set(preset))
    sections = {
        "data": {"dataset": preset, "resolution": SETUP["lfae"]["image_size"], "num_frames": SETUP["dm"]["num_frames"]},
        "lfae": lfae_config_from_official(SETUP["lfae"]["model_params"], SETUP["lfae"]["image_size"]),
        "unet": {**unet_config_from_official(SETUP["dm"][unet_key]), "num_frames": 40, "sample_size": 32},
        "labels": {"embedding_dim": 768, "learned": False},
    }
    sections["unet"]["dim_mults"] = list(sections["unet"]["dim_mults"])
    (tmp_path / f"{preset}128.yaml").write_text(yaml.safe_dump(sections))
    monkeypatch.setattr(convert_command, "CONFIG_DIR", tmp_path)
    table = save_label_table(tmp_path / f"{preset}.safetensors", labels, torch.randn(len(labels), 768))
    argv = ["convert", "--lfae", str(PARITY / "lfae_official.pth"), "--dm", str(PARITY / checkpoint),
            "--label-embeddings", str(table), "--out", str(tmp_path / "out"), "--preset", preset]  # fmt: skip
    assert main(argv) == 0
    pipe = LFDMPipeline.from_pretrained(tmp_path / "out")
    assert pipe.labels == labels and pipe.num_frames == SETUP["dm"]["num_frames"]
    assert pipe.unet.config.sample_size == pipe.latent_size == SETUP["dm"]["latent_size"]
    assert pipe.framing == (MUG_FRAMING if preset == "mug" else WHOLE_PICTURE)


def test_preset_and_official_parameters_are_alternatives(label_table, tmp_path, capsys):
    argv = ["convert", "--lfae", str(PARITY / "lfae_official.pth"), "--dm", str(PARITY / "dm_official.pth"),
            "--label-embeddings", str(label_table), "--out", str(tmp_path / "out"), "--preset", "mug",
            "--unet-params", "{}"]  # fmt: skip
    assert main(argv) == 1 and "either --preset" in capsys.readouterr().err


def test_label_table_must_hold_the_preset_labels(label_table):
    encoder = LabelEncoder.from_embedding_file(label_table)
    unet = SimpleNamespace(config=SimpleNamespace(label_dim=SETUP["dm"]["cond_dim"]))
    with pytest.raises(ValueError, match="embed-labels --labels mug"):
        check_labels(encoder, unet, ["anger", "fear"], "mug")
    with pytest.raises(ValueError, match="768-d"):
        check_labels(encoder, SimpleNamespace(config=SimpleNamespace(label_dim=16)), None, None)


def test_missing_files_and_bad_params_are_reported(label_table, tmp_path, capsys):
    argv = convert_argv("mug", label_table, tmp_path / "out", tmp_path / "params.json")
    missing = [tmp_path / "RegionMM.pth" if item.endswith("lfae_official.pth") else item for item in argv]
    assert main([str(item) for item in missing]) == 1
    assert "does not exist" in capsys.readouterr().err
    broken = argv[:]
    broken[broken.index("--unet-params") + 1] = "{not json"
    assert main(broken) == 1 and "JSON" in capsys.readouterr().err
