"""Run configs and the training infrastructure both stages share."""

from __future__ import annotations

import json
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from lfdm.training.config import AutoencoderTrainConfig, RunConfig, load_config, save_config
from lfdm.training.logs import JsonlLogger, LossWindow, log_means, read_jsonl, write_loss_curve
from lfdm.training.runs import find_checkpoint, list_checkpoints, prepare_run_dir, resolve_mixed_precision
from lfdm.training.stream import SampleStream, StreamBatchSampler


def test_unknown_key_raises_and_lists_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['batchsize'\].*valid keys.*batch_size"):
        RunConfig.from_dict({"train_lfae": {"batchsize": 4}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['resolutoin'\]"):
        RunConfig.from_dict({"data": {"resolutoin": 64}})


def test_unknown_section_raises_and_lists_the_valid_sections():
    with pytest.raises(ValueError, match=r"unknown config section\(s\) \['trian_lfae'\].*train_dm"):
        RunConfig.from_dict({"trian_lfae": {}})


def test_yaml_values_are_converted_and_checked():
    config = RunConfig.from_dict(
        {"train_lfae": {"learning_rate": "2e-4", "adam_betas": [0.5, 0.999], "lr_milestones": [0.5, 800]}}
    )
    assert config.train_lfae.learning_rate == 2e-4, "PyYAML reads 2e-4 as a string"
    assert config.train_lfae.adam_betas == (0.5, 0.999)
    assert AutoencoderTrainConfig(max_steps=1000, lr_milestones=(0.5, 800)).milestone_steps() == [500, 800]
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        RunConfig.from_dict({"train_lfae": {"batch_size": 2.5}})
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        RunConfig.from_dict({"train_lfae": {"mixed_precision": "fp8"}})
    with pytest.raises(ValueError, match="data.dataset must be one of"):
        RunConfig.from_dict({"data": {"dataset": "webcam"}})


def test_vgg19_weight_without_a_weights_file_says_what_to_do_when_training_starts():
    from lfdm.training.losses import AutoencoderLoss

    config = AutoencoderTrainConfig(vgg19_weight=10)  # loading the config works (other stages read the file too)
    with pytest.raises(ValueError, match="vgg19_weights"):
        AutoencoderLoss.from_config(config)


def test_model_sections_pass_through_as_keyword_dicts():
    config = RunConfig.from_dict({"unet": {"dim": 32}, "labels": {"labels": ["a"]}})
    assert config.unet == {"dim": 32} and config.labels == {"labels": ["a"]}


def test_every_shipped_config_loads():
    from pathlib import Path

    import lfdm

    for path in sorted((Path(lfdm.__file__).parent / "configs").glob("*.yaml")):
        config = load_config(path)
        if config.train_refiner is not None:  # the refiner trains on frames `scale` x its autoencoder's size
            assert config.data.resolution == config.refiner["scale"] * 64, f"{path.name}: for the 64 px model"
            continue
        if config.train_distill is not None:  # a student of a pipeline takes its teacher's picture size
            teacher = Path(lfdm.__file__).parents[1] / config.train_distill.teacher / "lfae" / "config.json"
            assert json.loads(teacher.read_text())["image_size"] == config.data.resolution, path.name
            continue
        assert config.lfae["image_size"] == config.data.resolution, f"{path.name}: model and data sizes differ"


def test_config_round_trips_through_yaml(tmp_path):
    config = RunConfig.from_dict({"data": {"resolution": 32}, "lfae": {"image_size": 32}, "train_lfae": {"seed": 3}})
    loaded = load_config(save_config(config, tmp_path / "run.yaml"))
    assert loaded.to_dict() == config.to_dict()
    assert loaded.name == "run"


def test_shipped_synthface_config_loads():
    from pathlib import Path

    import lfdm

    config = load_config(Path(lfdm.__file__).parent / "configs" / "synthface64.yaml")
    assert config.data.dataset == "synthface" and config.lfae["image_size"] == config.data.resolution == 64


def test_jsonl_logger_appends_parseable_records_and_truncates_on_resume(tmp_path):
    log = JsonlLogger(tmp_path / "log.jsonl")
    for step in (1, 2, 3):
        log.log(step, loss=torch.tensor(1.0 / step), lr=2e-4)
    assert [r["step"] for r in read_jsonl(log.path)] == [1, 2, 3]
    assert read_jsonl(log.path)[1]["loss"] == pytest.approx(0.5)
    log.truncate_after(2)
    assert [r["step"] for r in read_jsonl(log.path)] == [1, 2]
    assert write_loss_curve(log.path, tmp_path / "curve.png").stat().st_size > 0


def test_checkpoints_are_found_by_step_and_incomplete_ones_ignored(tmp_path):
    for step in (9, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "training_state.json").write_text(json.dumps({"step": step}))
    (tmp_path / "checkpoint-11").mkdir()  # an interrupted save: no training_state.json
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10"]
    assert find_checkpoint(tmp_path).name == "checkpoint-10"
    assert find_checkpoint(tmp_path / "checkpoint-9").name == "checkpoint-9"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoint(tmp_path / "checkpoint-11")


def test_a_new_run_refuses_a_folder_with_checkpoints_and_names_with_spaces(tmp_path):
    config = RunConfig()
    run = prepare_run_dir(tmp_path / "run", config, resuming=False)
    assert (run / "config.yaml").is_file()
    (run / "checkpoint-1").mkdir()
    (run / "checkpoint-1" / "training_state.json").write_text('{"step": 1}')
    with pytest.raises(ValueError, match="--resume"):
        prepare_run_dir(run, config, resuming=False)
    with pytest.raises(ValueError, match="spaces"):
        prepare_run_dir(tmp_path / "my run", config, resuming=False)


@pytest.mark.parametrize("terminal", [True, False])
def test_a_run_without_a_progress_bar_logs_how_far_it_is(tmp_path, caplog, terminal):
    """Both stages log through `log_means`: a run in the background (no terminal, no bar) still says its step."""
    window, log = LossWindow(), JsonlLogger(tmp_path / "log.jsonl")
    window.add({"loss": 2.0})
    window.add({"loss": 4.0})
    progress = SimpleNamespace(disable=not terminal, set_postfix=lambda **kwargs: None)
    with caplog.at_level(logging.INFO, logger="lfdm.training.logs"):
        log_means(window, 20, 100, progress=progress, log=log, lr=1e-4, main=True)
    (record,) = read_jsonl(tmp_path / "log.jsonl")
    assert record["step"] == 20 and record["loss"] == 3.0 and record["lr"] == 1e-4
    assert ("step 20/100 loss 3.0000" in caplog.text) is not terminal


def test_mixed_precision_auto_is_fp32_on_cpu():
    if torch.cuda.is_available():
        assert resolve_mixed_precision("auto") in ("bf16", "fp16")
    else:
        assert resolve_mixed_precision("auto") == "no"
    assert resolve_mixed_precision("bf16") == "bf16"


class RandomItems(Dataset):
    """Items drawn from the global RNGs, as augmentations often are."""

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return (index, random.random(), float(np.random.rand()), torch.rand(()).item())


def test_sample_stream_is_a_function_of_seed_and_sample_number():
    first, second = SampleStream(RandomItems(), seed=0), SampleStream(RandomItems(), seed=0)
    assert [first[n] for n in range(12)] == [second[n] for n in reversed(range(12))][::-1], (
        "order of reads is irrelevant"
    )
    assert sorted(first[n][0] for n in range(5)) == list(range(5)), "each epoch visits every item once"
    assert sorted(first[n][0] for n in range(5, 10)) == list(range(5)), "and so does the next epoch"
    assert SampleStream(RandomItems(), seed=1)[0] != first[0]


def test_sample_stream_leaves_the_global_rngs_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    SampleStream(RandomItems(), seed=0)[4]
    assert torch.equal(torch.rand(3), expected)


def test_stream_batches_split_processes_and_resume_at_a_micro_batch():
    def batches(start, process, count=3):
        sampler = iter(StreamBatchSampler(2, start=start, process_index=process, num_processes=2))
        return [next(sampler) for _ in range(count)]

    assert batches(0, 0) == [[0, 1], [4, 5], [8, 9]]
    assert batches(0, 1) == [[2, 3], [6, 7], [10, 11]]
    assert batches(1, 0, count=2) == batches(0, 0)[1:], "resuming at micro-batch 1 continues the same stream"


def test_training_and_evaluation_do_not_import_each_other():
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "lfdm"
    for package, other in (("training", "lfdm.evaluation"), ("evaluation", "lfdm.training")):
        for path in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                assert not any(name.startswith(other) for name in names), f"{path.name} imports {other}"


def test_shipped_run_configs_load_and_hold_only_their_stage_sections():
    import pathlib

    import yaml

    from lfdm.training.config import STAGE_SECTIONS

    folder = pathlib.Path(__file__).resolve().parents[1] / "checkpoints" / "training"
    paths = sorted(folder.glob("*.yaml"))
    assert len(paths) == 21, "one config per shipped run"
    for path in paths:
        stage = "dm" if "_dm" in path.stem else "lfae"
        config = load_config(path)
        assert tuple(yaml.safe_load(path.read_text())) == STAGE_SECTIONS[stage], path.name
        assert (config.train_dm is not None) == (stage == "dm"), path.name
    shipped_lfae = json.loads((folder.parent / "lfae" / "config.json").read_text())
    trained = load_config(folder / "20_lfae.yaml").lfae
    assert {key: shipped_lfae[key] for key in trained} == trained, "20_lfae.yaml trained the shipped autoencoder"
    last = load_config(folder / "21_dm.yaml")
    assert last.train_dm.lfae == "runs/20_lfae/model" and last.data.appearance > 0, "21_dm.yaml made the shipped U-Net"


def test_a_run_saves_the_sections_its_stage_reads_and_older_run_folders_still_load(tmp_path):
    config = RunConfig.from_dict(
        {"data": {"lfae_frame_sampling": "pair"}, "lfae": {"image_size": 32}, "unet": {"dim": 8}, "train_dm": {}}
    )
    assert list(config.to_dict("lfae")) == ["data", "lfae", "train_lfae"]
    assert list(config.to_dict("dm")) == ["data", "unet", "train_dm"], "sections that are not set are left out"
    assert "lfae_frame_sampling" not in config.to_dict()["data"], "the one stage-one sampling is no longer a key"
    with pytest.raises(ValueError, match="lfae_frame_sampling"):
        RunConfig.from_dict({"data": {"lfae_frame_sampling": "clip"}})
