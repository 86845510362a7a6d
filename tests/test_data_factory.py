"""One data factory: every command and both training stages name their data the same way."""

from __future__ import annotations

import argparse

import pytest

from lfdm.data.factory import DATASETS, DataConfig, build_dataset, make_dataset


def test_synthface_clips_and_pairs_come_from_the_factory():
    clips = make_dataset("synthface", split="test", resolution=32, num_frames=4, num_identities=1)
    assert len(clips) == 7 and tuple(clips[0]["video"].shape) == (3, 4, 32, 32)
    pairs = build_dataset(DataConfig(resolution=32, num_frames=4), view="pair", split="train", length=5)
    assert len(pairs) == 5 and {"reference", "driving"} <= set(pairs[0])


def test_real_videos_without_a_folder_say_which_option_to_pass():
    with pytest.raises(ValueError, match="--data-root DIR"):
        make_dataset("mug", split="test", resolution=32, num_frames=4)
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_dataset("kinetics", split="test", resolution=32, num_frames=4)


@pytest.mark.parametrize("command", ["evaluate", "evaluate-lfae", "train-classifier", "train-lfae", "train-dm"])
def test_every_command_takes_data_and_data_root(command):
    import importlib

    from lfdm.cli import COMMANDS

    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command].module).add_arguments(parser)
    args, _ = parser.parse_known_args(["--data", "mug", "--data-root", "/data/MUG", "--model", "m"])
    assert (args.data, args.data_root) == ("mug", "/data/MUG")


def test_the_data_sets_are_listed_once():
    import lfdm.commands.evaluate
    import lfdm.commands.train_classifier
    import lfdm.training.config

    for module in (lfdm.commands.evaluate, lfdm.commands.train_classifier, lfdm.training.config):
        assert getattr(module, "DATASETS", DATASETS) is DATASETS, f"{module.__name__} has a list of its own"
