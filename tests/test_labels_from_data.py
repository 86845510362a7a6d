"""Labels from the data: a folder of clips names its own labels, and a warm start from a pipeline keeps the rows of
the labels it knows and gives new labels new rows."""

from __future__ import annotations

import json

import pytest
import torch

from lfdm.data.synthetic import render_video
from lfdm.models.labels import LabelEncoder
from lfdm.schedulers import make_scheduler, set_default_steps
from lfdm.testing import make_tiny_pipeline
from lfdm.training.config import RunConfig, save_config
from lfdm.training.dm import build_training_model, init_label_rows, merge_labels
from lfdm.training.dm_targets import load_frozen_lfae
from lfdm.video import write_video

KNOWN = ["smile", "frown", "surprise"]  # the tiny pipeline's labels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    torch.manual_seed(0)
    pipe = make_tiny_pipeline(labels=KNOWN)
    pipe.scheduler = set_default_steps(make_scheduler("dpmsolver", pipe.scheduler.config), 3)  # measured, say
    folder = tmp_path_factory.mktemp("pipeline")
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory):
    """clips/<label>/<take>.mp4: one label the pipeline knows (surprise) and one it does not (wink)."""
    root = tmp_path_factory.mktemp("clips")
    for seed, label, folder in ((1, "surprise", "surprise"), (2, "happiness", "wink"), (3, "happiness", "wink")):
        write_video(root / folder / f"take{seed}.mp4", render_video(seed, label, 0, resolution=32, num_frames=6), fps=8)
    return root


def run_config(tmp_path, pipeline_dir, **data) -> RunConfig:
    """A run config as a shipped one is written: its labels section lists the labels of its own data."""
    unet = {k: v for k, v in json.loads((pipeline_dir / "unet" / "config.json").read_text()).items() if k[0] != "_"}
    sections = {
        "data": {"dataset": "synthface", "resolution": 32, "num_frames": 4, **data},
        "unet": unet,
        "labels": {"labels": ["anger", "happiness"], "embedding_dim": 16, "learned": True},
        "train_dm": {
            "output_dir": str(tmp_path / "unused"),
            "batch_size": 2,
            "max_steps": 1,
            "log_every": 1,
            "sample_every": 0,
            "checkpoint_every": 0,
            "mixed_precision": "no",
            "ema_decay": 0.0,
        },
    }
    return RunConfig.from_dict(sections, name="tiny")


def test_merged_labels_keep_the_known_order_and_add_the_new_ones():
    assert merge_labels(KNOWN, ["surprise", "wink", "yawn"]) == KNOWN + ["wink", "yawn"]
    assert merge_labels(KNOWN, []) == KNOWN


def test_known_labels_keep_their_rows_and_new_ones_start_a_known_rows_distance_away():
    torch.manual_seed(0)
    source = LabelEncoder(labels=KNOWN, embedding_dim=8)
    target = LabelEncoder(labels=["surprise", "wink", "smile", "nod"], embedding_dim=8)
    init_label_rows(target, source)
    torch.testing.assert_close(target(["surprise", "smile"]), source(["surprise", "smile"]))
    with torch.no_grad():
        mean = source.vectors.mean(0)
        spread = (source.vectors - mean).norm(dim=1).mean()
        wink, nod = target("wink")[0], target("nod")[0]
        torch.testing.assert_close((wink - mean).norm(), spread, msg="as far from the average action as a known one")
        assert (nod - wink).norm() > 0.5 * spread, "two new labels start apart"
        again = LabelEncoder(labels=["surprise", "wink", "smile", "nod"], embedding_dim=8)
        init_label_rows(again, source)
        assert torch.equal(again.vectors, target.vectors), "the same rows every time"
    with pytest.raises(ValueError, match="embedding_dim"):
        init_label_rows(LabelEncoder(labels=["wink"], embedding_dim=4), source)


def test_a_warm_start_on_a_folder_knows_the_pipelines_labels_and_the_new_ones(pipeline_dir, clips_root, tmp_path):
    config = run_config(tmp_path, pipeline_dir, dataset="folder", root=str(clips_root))
    config.labels.pop("labels")  # what `--data folder` on the command line does to a config's label list
    config.train_dm.init_from = str(pipeline_dir)
    model = build_training_model(config, load_frozen_lfae(pipeline_dir), default_labels=["surprise", "wink"])
    source = LabelEncoder.from_pretrained(pipeline_dir / "label_encoder")
    assert list(model.label_encoder.labels) == KNOWN + ["wink"]
    with torch.no_grad():
        torch.testing.assert_close(model.label_encoder(KNOWN), source(KNOWN))
        spread = (source.vectors - source.vectors.mean(0)).norm(dim=1).mean()
        torch.testing.assert_close((model.label_encoder("wink")[0] - source.vectors.mean(0)).norm(), spread)


def test_train_dm_takes_the_labels_of_a_folder_and_keeps_the_pipelines(pipeline_dir, clips_root, tmp_path):
    from lfdm.cli import main
    from lfdm.pipeline import LFDMPipeline

    path = save_config(run_config(tmp_path, pipeline_dir), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    arguments = ["train-dm", "--config", str(path), "--data", "folder", "--data-root", str(clips_root)]
    assert main([*arguments, "--init-from", str(pipeline_dir), "--output-dir", str(run)]) == 0
    pipe = LFDMPipeline.from_pretrained(run / "model")
    source = LabelEncoder.from_pretrained(pipeline_dir / "label_encoder")
    assert pipe.labels == KNOWN + ["wink"], "the pipeline's labels first, then the data's new one"
    with torch.no_grad():  # labels without clips get no gradient, so Adam leaves their rows as they were
        torch.testing.assert_close(pipe.label_encoder(["smile", "frown"]), source(["smile", "frown"]))
        assert not torch.allclose(pipe.label_encoder("wink")[0], source.vectors.mean(0)), "the new row is its own"
    card = (run / "model" / "README.md").read_text()
    assert "wink (new)" in card and "surprise (new)" not in card and str(clips_root) in card
    assert pipe.default_num_inference_steps == 3 and "3 steps by default" in card, "the parent's measured steps"

    # the app offers it with its own labels and card
    from lfdm.app.models import find_pipelines
    from lfdm.app.service import GenerationService

    listed = find_pipelines(tmp_path)
    assert listed[f"{tmp_path.name}/run/model"] == str(run / "model"), "a run's model/ is listed under its root"
    service = GenerationService.from_checkpoints(tmp_path / "no-checkpoints", model=str(run / "model"))
    assert service.labels() == KNOWN + ["wink"]
    assert "wink (new)" in service.describe() and "4 actions (smile, frown, surprise, wink)" in service.describe()

    # without --init-from: the folder's labels only, sorted, and no list written by hand
    fresh = tmp_path / "fresh"
    assert main([*arguments, "--lfae", str(pipeline_dir), "--output-dir", str(fresh)]) == 0
    assert LFDMPipeline.from_pretrained(fresh / "model").labels == ["surprise", "wink"]


def test_a_label_list_in_the_config_still_fixes_the_labels(pipeline_dir, clips_root, tmp_path):
    from lfdm.training.dm import train

    config = run_config(tmp_path, pipeline_dir, dataset="folder", root=str(clips_root))
    with pytest.raises(ValueError, match=r"labels \['surprise', 'wink'\] that the `labels` section lacks"):
        train(config, lfae=pipeline_dir)
    model = build_training_model(config, load_frozen_lfae(pipeline_dir))
    assert list(model.label_encoder.labels) == ["anger", "happiness"]


def test_the_readme_own_video_commands_parse_and_init_from_reaches_both_stages(monkeypatch):
    """Every `python -m lfdm` line of the README's "Your own videos" parses, and --init-from / --data override the
    config files it names."""
    import argparse
    import importlib
    import re
    import shlex
    from pathlib import Path

    from lfdm.cli import COMMANDS
    from lfdm.commands._run_config import load_run_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own videos", 1)[1].split("\n## ", 1)[0]
    commands = [" ".join(match.split()) for match in re.findall(r"python -m lfdm (.+?)(?<!\\)\n", section, re.S)]
    commands = [shlex.split(command.replace("\\ ", " "), comments=True) for command in commands]
    assert [command[0] for command in commands[:3]] == ["prepare-videos", "train-lfae", "train-dm"]
    assert {command[0] for command in commands[3:]} == {  # the worked example
        "make-dataset",
        "prepare-videos",
        "train-dm",
        "train-classifier",
        "evaluate",
    }
    for name, *arguments in commands:
        parser = argparse.ArgumentParser()
        importlib.import_module(COMMANDS[name].module).add_arguments(parser)
        args = parser.parse_args(arguments)
        if name == "train-lfae":
            config = load_run_config(args, "train_lfae", start_hint="")
            assert (config.data.dataset, config.data.root) == ("folder", "clips") and args.init_from
        if name == "train-dm":
            config = load_run_config(args, "train_dm", start_hint="")
            assert "labels" not in config.labels, "the shipped config's label list gives way to the folder's"
            assert args.init_from == "checkpoints"

    seen = {}
    monkeypatch.setattr("lfdm.training.lfae.train", lambda config, resume=None: seen.setdefault("lfae", config).name)
    from lfdm.cli import main

    assert main(commands[1]) == 0
    assert seen["lfae"].train_lfae.init_from == "checkpoints/lfae"
