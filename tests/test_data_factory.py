"""One data factory: every command and both training stages name their data the same way."""

from __future__ import annotations

import argparse

import pytest

from lfdm.data.factory import DATASET_DESCRIPTIONS, DATASETS, DataConfig, build_dataset, describe_dataset, make_dataset


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


def test_each_data_set_describes_its_sizes_and_whether_it_is_rendered():
    assert tuple(DATASET_DESCRIPTIONS) == DATASETS, "every data set has one description, in the listed order"
    synthface, mug = describe_dataset("synthface"), describe_dataset("mug")
    assert (synthface.resolution, synthface.num_frames, synthface.rendered, synthface.has_looks) == (64, 16, True, True)
    assert (mug.resolution, mug.num_frames, mug.rendered, mug.has_looks) == (128, 40, False, False), "the paper's"
    with pytest.raises(ValueError, match="dataset must be one of"):
        describe_dataset("kinetics")


def test_commands_read_their_default_sizes_from_the_descriptions(monkeypatch):
    """train-classifier reads a data set at its described size unless told otherwise."""
    from lfdm.commands import train_classifier
    from lfdm.data import factory

    made = []
    monkeypatch.setattr(factory, "make_dataset", lambda dataset, **kwargs: made.append(kwargs) or DummyClips())
    for data, expected in (("synthface", (64, 16)), ("natops", (128, 40))):
        made.clear()
        args = argparse.Namespace(
            data=data, data_root="/videos", label_from="folder", resolution=None, video_frames=None, data_seed=0,
            pool_size=4, test_identities=1, labels=None,
        )  # fmt: skip
        train_classifier._datasets(args)
        assert {(kwargs["resolution"], kwargs["num_frames"]) for kwargs in made} == {expected}, data


def test_photographed_data_takes_no_look():
    from lfdm.evaluation.lfae import evaluation_videos

    with pytest.raises(ValueError, match="photographic look is for SynthFace"):
        next(evaluation_videos(DataConfig(dataset="mug", root="/videos"), appearance=0.5))


class DummyClips:
    labels = ("a",)
