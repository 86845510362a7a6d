"""Training the action classifier that judges generated videos (`lfdm.evaluation.classifier`); its scores on a
data set come from `lfdm.evaluation.accuracy`.

The training clips are read once into a pool at the classifier's input size (rendering a 16-frame SynthFace clip
costs ~25 ms of CPU, more than a training step spends on it), then every step draws a batch from the pool and
augments it, so each clip is seen in many versions:

- horizontal flip (p 0.5, the whole clip);
- brightness and contrast jitter;
- a light Gaussian blur (p `blur_probability`, sigma up to `max_blur_sigma` input pixels): generated frames are
  decoded by the autoencoder and a little softer than renders;
- a little pixel noise.

    classifier = ActionClassifier(labels=list(SYNTHFACE_LABELS))
    pool = build_clip_pool(SynthFaceDataset("train", length=6000), classifier)
    history = train_classifier(classifier, pool, ClassifierTrainConfig(steps=1500))
    report = classify_dataset(classifier, SynthFaceDataset("test")).accuracy_report()
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

from lfdm.evaluation.classifier import ActionClassifier, resample_clip
from lfdm.metrics import gaussian_window

logger = logging.getLogger(__name__)


@dataclass
class ClassifierTrainConfig:
    """Optimisation and augmentation of the action classifier."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 32  # clips per step
    learning_rate: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine decay to 0)
    warmup_steps: int = 50  # steps of linear warm-up
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    label_smoothing: float = 0.05  # cross-entropy label smoothing
    seed: int = 0  # weights, batch order and augmentation
    brightness: float = 0.2  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor (around the clip's mean gray) drawn from [1 - c, 1 + c]
    blur_probability: float = 0.5  # chance a clip is blurred
    max_blur_sigma: float = 0.8  # Gaussian blur sigma drawn from [0.2, max], in input pixels
    noise_std: float = 0.02  # std of the added pixel noise is drawn from [0, noise_std]
    log_every: int = 100  # steps between log lines

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1; got {self.steps} and {self.batch_size}.")


@dataclass
class ClipPool:
    """Training clips at the classifier's input: videos uint8 (N, 3, F, S, S), label indices int64 (N,)."""

    videos: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def build_clip_pool(dataset: Dataset, classifier: ActionClassifier, size: int | None = None) -> ClipPool:
    """Read `size` clips (default: `len(dataset)`) from a clip-view data set, resampled to the classifier's input.

    Items must carry `video` (3, F, H, W) in [0, 1] and a `label` among the classifier's labels (the pool stores
    its index there, whatever order the data set keeps its labels in). A data set smaller than `size` is read
    several times, with `set_epoch` before each pass (new frames and jitter).
    """
    from tqdm.auto import tqdm

    size = len(dataset) if size is None else size
    videos = torch.empty(
        (size, 3, classifier.config.num_frames, classifier.config.input_size, classifier.config.input_size),
        dtype=torch.uint8,
    )
    labels = torch.empty(size, dtype=torch.int64)
    # tqdm shows on a terminal only (disable=None); headless logs get a line per 1000 clips
    for index in tqdm(range(size), desc="reading training clips", unit="clip", disable=None):
        if (index + 1) % 1000 == 0:
            logger.info("read %d/%d training clips", index + 1, size)
        epoch, position = divmod(index, len(dataset))
        if position == 0 and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        item = dataset[position]
        clip = resample_clip(item["video"][None].float(), classifier.config.num_frames, classifier.config.input_size)
        videos[index] = (clip[0] * 255).round().clamp(0, 255).to(torch.uint8)
        if item["label"] not in classifier.labels:
            raise ValueError(
                f"training clip {position} has the label {item['label']!r}, which the classifier does not know "
                f"(its labels: {classifier.labels}); build the classifier with the data set's labels."
            )
        labels[index] = classifier.labels.index(item["label"])
    return ClipPool(videos, labels)


def _blur(videos: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each clip with its own sigma (B,), every frame alike: (B, 3, F, S, S) -> same."""
    b = videos.shape[0]
    radius = max(1, math.ceil(2 * float(sigmas.max())))
    taps = torch.stack([gaussian_window(2 * radius + 1, float(sigma)) for sigma in sigmas])  # (B, K)
    frames = rearrange(videos, "b c f h w -> 1 (b c f) h w")
    channels_per_clip = frames.shape[1] // b
    kernels = taps.repeat_interleave(channels_per_clip, dim=0)  # (B*C*F, K)
    padded = F.pad(frames, (radius, radius, 0, 0), mode="replicate")
    frames = F.conv2d(padded, kernels[:, None, None, :], groups=frames.shape[1])
    padded = F.pad(frames, (0, 0, radius, radius), mode="replicate")
    frames = F.conv2d(padded, kernels[:, None, :, None], groups=frames.shape[1])
    return rearrange(frames, "1 (b c f) h w -> b c f h w", b=b, c=videos.shape[1])


def augment_clips(videos: torch.Tensor, config: ClassifierTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The training augmentation (module docstring): (B, 3, F, S, S) in [0, 1] -> same shape, in [0, 1]."""
    b = videos.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:  # (B, 1, 1, 1, 1)
        return (low + (high - low) * torch.rand(b, generator=generator)).view(b, 1, 1, 1, 1)

    flip = torch.rand(b, generator=generator) < 0.5
    videos = torch.where(flip.view(b, 1, 1, 1, 1), videos.flip(-1), videos)
    blur = torch.rand(b, generator=generator) < config.blur_probability
    if blur.any() and config.max_blur_sigma > 0:
        sigmas = uniform(0.2, max(config.max_blur_sigma, 0.2)).flatten()[blur]
        videos = videos.clone()
        videos[blur] = _blur(videos[blur], sigmas)
    gray = videos.mean(dim=(1, 2, 3, 4), keepdim=True)
    videos = (videos - gray) * uniform(1 - config.contrast, 1 + config.contrast) + gray
    videos = videos * uniform(1 - config.brightness, 1 + config.brightness)
    noise = torch.randn(videos.shape, generator=generator) * uniform(0, config.noise_std)
    return (videos + noise).clamp(0, 1)


def _learning_rate(step: int, config: ClassifierTrainConfig) -> float:
    # 1) linear warm-up; 2) cosine decay to 0 at the last step
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainHistory:
    """Logged means over each `log_every` window: step, loss and batch accuracy; wall seconds in all."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_classifier(
    classifier: ActionClassifier, pool: ClipPool, config: ClassifierTrainConfig, *, progress: bool = True
) -> TrainHistory:
    """Train `classifier` in place on batches drawn from `pool` (CPU); returns the logged history."""
    from tqdm.auto import tqdm

    if len(pool) < 1:
        raise ValueError("the clip pool is empty; check the training data.")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history, window_loss, window_correct, window_count = TrainHistory(), 0.0, 0, 0
    start = time.perf_counter()
    classifier.train()
    for step in tqdm(range(config.steps), desc="training classifier", unit="step", disable=None if progress else True):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        indices = torch.randint(len(pool), (config.batch_size,), generator=generator)
        videos = augment_clips(pool.videos[indices].float() / 255, config, generator)
        labels = pool.labels[indices]
        logits = classifier(videos).logits
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window_loss += loss.item() * len(labels)
        window_correct += int((logits.argmax(dim=1) == labels).sum())
        window_count += len(labels)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            history.steps.append(step + 1)
            history.losses.append(window_loss / window_count)
            history.accuracies.append(window_correct / window_count)
            logger.info(
                "step %d/%d  loss %.4f  batch accuracy %.3f  lr %.2e  %.0f s",
                step + 1, config.steps, history.losses[-1], history.accuracies[-1], optimizer.param_groups[0]["lr"],
                time.perf_counter() - start,
            )  # fmt: skip
            window_loss, window_correct, window_count = 0.0, 0, 0
    classifier.eval()
    history.seconds = time.perf_counter() - start
    return history
