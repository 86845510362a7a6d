"""The model card (Markdown) of a trained action classifier, written by `python -m lfdm train-classifier` from the
run's `training_summary.json`."""

from __future__ import annotations

from pathlib import Path


def model_card(summary: dict, folder: Path) -> str:
    """The model card (Markdown) of a trained classifier, from its training summary."""
    test, config, model = summary["test"], summary["train_config"], summary["classifier_config"]
    synthface = summary["data"] == "synthface"
    size = summary.get("video_size")  # what the data set was read at (older summaries lack it)
    read_at = f"; {size['resolution']} px, {size['num_frames']} frames" if size else ""
    rendered_at = f", rendered at {size['resolution']} px / {size['num_frames']} frames" if size else ""
    widths = ", ".join(str(width) for width in model["channels"])
    if synthface:
        data = (
            f"{summary['pool_size']} SynthFace training clips (random identities of the train split, random labels "
            f"and takes{read_at}), read once and augmented at every step"
        )
        test_set = (
            f"the SynthFace test split ({test['count'] // len(test['labels'])} identities never seen in training x "
            f"{len(test['labels'])} labels, take 0{rendered_at})"
        )
    else:
        data = (
            f"the {summary['data']} training subjects under `{summary['data_root']}` ({summary['pool_size']} clips"
            f"{read_at})"
        )
        test_set = f"the {summary['data']} test subjects"
    lines = [
        f"# Action classifier ({summary['data']})",
        "",
        f"`{folder.as_posix()}` is an `lfdm.evaluation.classifier.ActionClassifier`, the judge of generated videos in "
        "`python -m lfdm evaluate` (action accuracy, and the features of the Fréchet classifier distance). It is "
        f"small ({summary['num_parameters']:,} parameters) and runs on a CPU.",
        "",
        "## Model",
        "",
        f"A 3D CNN over the clip resized to {model['input_size']} px and evenly resampled to {model['num_frames']} "
        "frames, plus its difference to frame 0 (6 input channels: the expression is read from how the face moves, "
        f"not from who it is). Blocks of a 3x3x3 convolution, GroupNorm and ReLU with {widths} channels; strides "
        "halve space in every block but the last and time in every block but the first and the last. Global average "
        f"pooling gives the {model['channels'][-1]}-D `features`; a linear layer gives the logits.",
        "",
        "## Training",
        "",
        f"- Data: {data}.",
        f"- Augmentation: horizontal flip, brightness and contrast jitter (±{config['brightness']:.0%}), a light "
        f"Gaussian blur (p {config['blur_probability']}, sigma 0.2-{config['max_blur_sigma']} px at "
        f"{model['input_size']} px: decoded frames are softer than renders), pixel noise (std up to "
        f"{config['noise_std']}).",
        f"- Optimisation: AdamW, lr {config['learning_rate']} with {config['warmup_steps']} warm-up steps and cosine "
        f"decay, weight decay {config['weight_decay']}, label smoothing {config['label_smoothing']}, "
        f"{config['steps']} steps of {config['batch_size']} clips, seed {config['seed']}.",
        f"- Command: `{summary['command']}`",
        f"- Time: {summary['wall_seconds'] / 60:.1f} min wall clock, {summary['cpu_seconds'] / 60:.1f} min of CPU, "
        f"on {summary['threads']} CPU thread(s) ({summary['machine']}), reading the data included.",
        "",
        "## Accuracy on real test videos",
        "",
        f"**{test['accuracy'] * 100:.1f} %** on {test['count']} videos of {test_set}.",
        "",
        "| label | accuracy |",
        "| --- | --- |",
        *(f"| {label} | {accuracy * 100:.1f} % |" for label, accuracy in test["per_label"].items()),
        "",
        "## Limits",
        "",
        f"- It knows the {len(test['labels'])} labels above and the look of its training data only: a score on "
        "other data means nothing.",
        "- It is a proxy. A generated video it labels correctly shows the expression's motion clearly enough for a "
        f"small CNN at {model['input_size']} px; it says nothing about fine detail, which frame-0 PSNR and the LFAE "
        "reconstruction PSNR measure.",
        "- The Fréchet classifier distance (FCD) built on its features is not FVD: FVD uses an I3D network trained on "
        "Kinetics. FCD values compare only with FCD values from this checkpoint and the same number of videos.",
    ]
    return "\n".join(lines) + "\n"
