"""Stage two: train the flow diffusion model on the frozen LFAE's latent flows (LFDM sec. 3.2).

    python -m lfdm train-dm --config lfdm/configs/synthface64.yaml --lfae runs/lfae-synthface64-.../model
    accelerate launch -m lfdm train-dm --config lfdm/configs/mug128.yaml --lfae checkpoints/mug-lfae
    python -m lfdm train-dm --resume runs/dm-synthface64-20250101-120000          # continue a run

Notation (variable -> paper): `latents` -> z_0 = [f_1..f_K, m_1..m_K] of a clip relative to its frame 0,
(B, 3, F, h, w); `features` -> Phi(x_0) (B, C, h, w); label embedding -> e(y).

For each micro-batch of clips, the frozen LFAE gives the targets (or they come from the cache), and the U-Net and
the label table are trained jointly on the loss of eq. 3, ||eps - eps_theta(z_t, t, Phi(x_0), y)||^2 at a uniform t
with the label dropped to the null embedding 10% of the time (classifier-free guidance) (`FlowDiffusionStage`);
after each optimiser step the EMA of the weights is updated. The loop around it (optimiser, schedule, logs,
samples, checkpoints, resume) is `lfdm.training.loop`. The targets are never decoded back to frames during
training. `train` is importable without side effects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from lfdm.configuration import plain
from lfdm.data.factory import DataConfig
from lfdm.labelsets import label_set
from lfdm.latents import flows_to_latents, latents_to_flows
from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import FlowUNet3D
from lfdm.schedulers import (
    MODEL_DEFAULT_STEPS_KEY,
    diffusion_loss,
    make_sampler,
    make_training_scheduler,
    sampler_name,
    set_default_steps,
)
from lfdm.training import loop
from lfdm.training.card import model_card, write_model_card
from lfdm.training.config import FlowDiffusionTrainConfig, RunConfig
from lfdm.training.dm_samples import sample_image, sample_videos, write_samples
from lfdm.training.dm_targets import TargetCache, compute_targets, load_frozen_lfae
from lfdm.training.ema import ExponentialMovingAverage
from lfdm.training.lfae import record_framing
from lfdm.training.loop import Stage
from lfdm.training.stream import training_dataset
from lfdm.training.warm_start import init_weights

logger = logging.getLogger(__name__)


class FlowDiffusionTrainingModel(nn.Module):
    """The U-Net and the label encoder, trained jointly; `forward` is the training loss of one batch, so that
    data-parallel training sees every use of the weights inside it."""

    def __init__(
        self,
        unet: FlowUNet3D,
        label_encoder: LabelEncoder,
        null_label_probability: float,
        prediction_type: str = "epsilon",
    ) -> None:
        super().__init__()
        self.unet = unet
        self.label_encoder = label_encoder
        self.null_label_probability = null_label_probability
        self.noise_scheduler = make_training_scheduler(prediction_type=prediction_type)

    def forward(
        self, latents: torch.Tensor, features: torch.Tensor, labels: list[str], generator: torch.Generator
    ) -> torch.Tensor:
        """latents (B, 3, F, h, w), features (B, C, h, w), B labels -> the scalar loss of eq. 3; t, eps and the
        dropped labels are drawn from `generator`. Absolute-grid latents become displacements here when the U-Net
        diffuses residual flows."""
        if self.unet.config.residual_flow:
            latents = flows_to_latents(*latents_to_flows(latents), residual=True)
        embeddings = self.label_encoder(labels)
        return diffusion_loss(
            self.unet,
            self.noise_scheduler,
            latents,
            features.to(latents.dtype),
            embeddings,
            null_label_probability=self.null_label_probability,
            generator=generator,
        )


def build_label_encoder(section: dict | None, default_labels: Sequence[str] | None = None) -> LabelEncoder:
    """`LabelEncoder` from the `labels` section: `labels` (a list, or a preset name: mug | mhad | natops; default:
    `default_labels`, the data set's), `embedding_dim`, `learned`; a fixed table (`learned: false`) comes from
    `embedding_file` (written by `python -m lfdm embed-labels`)."""
    section = dict(section or {})
    labels = section.pop("labels", None) or default_labels
    if not labels:
        raise ValueError("no label list: set labels.labels to a list of label strings or a preset (mug, mhad, natops).")
    labels = list(label_set(labels)) if isinstance(labels, str) else list(labels)
    embedding_file = section.pop("embedding_file", None)
    if section.get("learned", True):
        return LabelEncoder(labels=labels, **section)
    if not embedding_file:
        raise ValueError(
            "labels.learned is false, so the fixed label table must come from labels.embedding_file: make it with "
            "`python -m lfdm embed-labels --labels <preset> --out FILE`, or set learned: true."
        )
    encoder = LabelEncoder.from_embedding_file(embedding_file)
    if list(encoder.labels) != labels:
        raise ValueError(f"{embedding_file} holds the labels {list(encoder.labels)}, not the data set's {labels}.")
    if encoder.config.embedding_dim != section.get("embedding_dim", encoder.config.embedding_dim):
        raise ValueError(
            f"{embedding_file} holds {encoder.config.embedding_dim}-d vectors but labels.embedding_dim is "
            f"{section['embedding_dim']}."
        )
    return encoder


def build_unet(section: dict | None, lfae: LatentFlowAutoencoder, *, num_frames: int, label_dim: int) -> FlowUNet3D:
    """`FlowUNet3D(**unet)`; `feature_channels`, `sample_size`, `num_frames` and `label_dim` default to the LFAE's,
    the clips' and the label encoder's values, and must agree with them when given."""
    implied = {
        "feature_channels": lfae.feature_channels,
        "sample_size": lfae.latent_size,
        "num_frames": num_frames,
        "label_dim": label_dim,
    }
    section = dict(section or {})
    for key, value in implied.items():
        if section.setdefault(key, value) != value:
            raise ValueError(
                f"unet.{key} is {section[key]} but the autoencoder, data and labels imply {value}; set it to {value} "
                "or leave it out."
            )
    return FlowUNet3D(**section)


def build_training_model(
    config: RunConfig, autoencoder: LatentFlowAutoencoder, default_labels: Sequence[str] | None = None
) -> FlowDiffusionTrainingModel:
    """The U-Net and label encoder of `config` with their initial weights (a function of `train_dm.seed`).

    The labels are the `labels` section's list when it has one, else `default_labels` (the data set's). With
    `train_dm.init_from` and no list in the section, the labels are the pipeline's own (its order) followed by the
    data set's new ones; either way a label the pipeline knows keeps its row of the table and a new label gets a
    row of its own at the known rows' distance from their mean (`init_label_rows`).
    """
    train = config.train_dm
    source = load_init_source(train.init_from) if train.init_from else None
    if source is not None and not (config.labels or {}).get("labels"):
        default_labels = merge_labels(source[1].labels, default_labels or ())
    torch.manual_seed(train.seed)  # the same initial weights on every process
    label_encoder = build_label_encoder(config.labels, default_labels=default_labels)
    unet = build_unet(
        config.unet, autoencoder, num_frames=config.data.num_frames, label_dim=label_encoder.config.embedding_dim
    )
    if source is not None:
        source_unet, source_labels = source
        init_weights(unet, source_unet, "train_dm.init_from")
        if label_encoder.config.learned:
            init_label_rows(label_encoder, source_labels)
        else:  # a fixed table (from an embedding file) is the same table in both
            init_weights(label_encoder, source_labels, "train_dm.init_from")
        logger.info("initialised the U-Net and label table from %s", train.init_from)
    return FlowDiffusionTrainingModel(unet, label_encoder, train.null_label_probability, train.prediction_type).train()


def load_init_source(folder: str | Path) -> tuple[FlowUNet3D, LabelEncoder]:
    """The U-Net and label encoder of the pipeline folder `folder` (`train_dm.init_from`, `--init-from`)."""
    folder = Path(folder)
    if not (folder / "unet").is_dir() or not (folder / "label_encoder").is_dir():
        raise FileNotFoundError(
            f"train_dm.init_from {str(folder)!r} is not a pipeline folder with unet/ and label_encoder/ "
            "(pass a train-dm run's model/ folder, or checkpoints/)."
        )
    return FlowUNet3D.from_pretrained(folder / "unet"), LabelEncoder.from_pretrained(folder / "label_encoder")


def merge_labels(known: Sequence[str], found: Sequence[str]) -> list[str]:
    """The labels a warm-started model knows: `known` (the pipeline's, in its order), then the labels of `found`
    (the data set's) that are new, in their order."""
    return list(known) + [label for label in found if label not in known]


@torch.no_grad()
def init_label_rows(encoder: LabelEncoder, source: LabelEncoder) -> None:
    """Fill the learned table of `encoder` from `source` by label name: a label `source` knows gets its row; a new
    label a row of its own, as far from the known rows' mean as they are on average, in a random direction (fixed by
    the label's place in the table). At the mean itself a new label would be an "average action" that the U-Net
    already answers with a blend of the known ones, and its row barely moves at a fine-tuning learning rate (SynthFace's
    wink stayed unlearned from there: benchmarks/RESULTS.md, "Your own videos")."""
    if encoder.config.embedding_dim != source.config.embedding_dim:
        raise ValueError(
            f"train_dm.init_from has {source.config.embedding_dim}-d label vectors but labels.embedding_dim is "
            f"{encoder.config.embedding_dim}; leave embedding_dim out or set it to {source.config.embedding_dim}."
        )
    known = source.vectors.detach().float()
    mean = known.mean(dim=0)
    spread = (known - mean).norm(dim=1).mean()  # how far a known action lies from the average one
    new = [label for label in encoder.labels if label not in source.labels]
    for index, label in enumerate(encoder.labels):
        if label in source.labels:
            row = known[source.labels.index(label)]
        else:
            direction = torch.randn(known.shape[1], generator=torch.Generator().manual_seed(index))
            row = mean + spread * direction / direction.norm()
        encoder.vectors[index] = row.to(encoder.vectors.dtype)
    if new:
        logger.info("new labels %s start at the known rows' distance from their mean, in directions of their own", new)


class FlowDiffusionStage(Stage):
    """Stage two in the shared loop (`lfdm.training.loop`): clips (or their cached targets) through the frozen LFAE,
    the loss of eq. 3, an EMA of the weights, sample videos and the EMA pipeline as the export."""

    name = "dm"

    def __init__(self, config: RunConfig, lfae: str | Path | None = None, dataset: Dataset | None = None) -> None:
        self.train = _train_config(config, lfae)
        self.config, self.dataset = config, dataset

    def build(self, accelerator) -> tuple[FlowDiffusionTrainingModel, Dataset]:
        self.autoencoder = load_frozen_lfae(self.train.lfae).to(accelerator.device)
        _check_resolution(self.autoencoder, self.config)
        _check_autoencoder_section(self.autoencoder, self.config, self.train.lfae)
        record_framing(
            self.autoencoder, self.config.data.dataset, self.config.data.root
        )  # the exported pipeline carries it
        clips = self.dataset if self.dataset is not None else training_dataset(self.config.data, view="clip")
        model = build_training_model(self.config, self.autoencoder, default_labels=getattr(clips, "labels", None))
        labels = list(model.label_encoder.labels)
        return model, _training_data(self.config, clips, self.autoencoder, labels, accelerator)

    def prepared(self, accelerator, training_model) -> None:
        self.ema = ExponentialMovingAverage(
            accelerator.unwrap_model(training_model),
            decay=self.train.ema_decay,
            warmup=self.train.ema_warmup,
            start_step=self.train.ema_start_step,
        )
        # steps once per optimiser step on every process; restored after the lr schedule by load_state
        accelerator.register_for_checkpointing(self.ema)

    def losses(self, accelerator, training_model, batch, micro_batch: int) -> dict[str, torch.Tensor]:
        """The loss of eq. 3 on one micro-batch: targets from the cache, or from the frozen LFAE now."""
        if "latents" in batch:  # cached targets
            latents = batch["latents"].to(accelerator.device, non_blocking=True)
            features = batch["features"].to(accelerator.device, non_blocking=True)
        else:  # clips: the frozen LFAE makes the targets now
            targets = compute_targets(self.autoencoder, batch["video"].to(accelerator.device, non_blocking=True))
            latents, features = targets.latents, targets.features
        generator = step_generator(self.train.seed, micro_batch, accelerator.process_index, latents.device)
        with accelerator.autocast():
            loss = training_model(latents, features, list(batch["label"]), generator)
        return {"loss": loss}

    def after_step(self, model: FlowDiffusionTrainingModel, step: int) -> None:
        self.ema.update(model, step)

    def prepare_samples(self, dataset: Dataset) -> None:
        self.image = sample_image(self.config.data) if self.train.sample_every else None

    def write_samples(self, model: FlowDiffusionTrainingModel, stem: Path) -> None:
        write_step_samples(self.autoencoder, self.ema, self.image, self.train, stem)

    def export(self, model: FlowDiffusionTrainingModel) -> PipelineExport:
        return PipelineExport(self.autoencoder, self.ema, self.train, self.config.data)


def train(
    config: RunConfig, lfae: str | Path | None = None, resume: str | None = None, *, dataset: Dataset | None = None
) -> Path:
    """Run stage two as `config` says; `lfae`: the trained autoencoder (else `train_dm.lfae`); `resume`: a run or
    checkpoint folder to continue. `dataset` replaces the data set of `config.data` (clip-view items).

    Returns the run folder; its `model/` is an `LFDMPipeline` folder with the EMA weights.
    """
    return loop.train(FlowDiffusionStage(config, lfae, dataset), resume)


def step_generator(seed: int, micro_batch: int, process: int, device) -> torch.Generator:
    """The generator of t, eps and the dropped labels of one micro-batch: a function of (seed, micro-batch,
    process) only, so a resumed run draws exactly what the uninterrupted one would have."""
    state = np.random.SeedSequence([seed, micro_batch, process, 2]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


class PipelineExport:
    """What a checkpoint's `model/` and the run's final `model/` hold: an `LFDMPipeline` folder with the EMA U-Net
    and label encoder, the frozen LFAE and the sampling scheduler (`python -m lfdm generate --model <it>`)."""

    def __init__(
        self,
        autoencoder: LatentFlowAutoencoder,
        ema: ExponentialMovingAverage,
        train: FlowDiffusionTrainConfig,
        data: DataConfig | None = None,
    ):
        self.autoencoder, self.ema, self.train, self.data = autoencoder, ema, train, data

    def save_pretrained(self, folder: str | Path) -> None:
        from lfdm.pipeline import LFDMPipeline

        averaged = self.ema.model
        scheduler = make_sampler(self.train.sample_scheduler, self.train.prediction_type)
        inherited = _inherit_default_steps(scheduler, self.train.init_from)
        pipe = LFDMPipeline(
            lfae=self.autoencoder, unet=averaged.unet, scheduler=scheduler, label_encoder=averaged.label_encoder
        )
        pipe.save_pretrained(folder)
        if self.data is not None:
            known = _known_labels(self.train.init_from)
            card = model_card(
                labels=averaged.label_encoder.labels,
                image_size=pipe.image_size,
                num_frames=pipe.num_frames,
                framing=pipe.framing,
                data=self.data,
                init_from=self.train.init_from,
                known_labels=known,
                default_steps=inherited,
            )
            write_model_card(folder, card)


def _inherit_default_steps(scheduler, init_from: str | None) -> int | None:
    """Give `scheduler` the measured default step count of the pipeline a run started from, for the same sampler
    (a fine-tuned model samples as its parent did until `evaluate --choose-default` measures its own); the count,
    or None when the parent measured none for this sampler."""
    folder = Path(init_from) / "scheduler" if init_from else None
    if folder is None or not (folder / "scheduler_config.json").is_file():
        return None
    measured = json.loads((folder / "scheduler_config.json").read_text()).get(MODEL_DEFAULT_STEPS_KEY) or {}
    steps = measured.get(sampler_name(scheduler))
    if steps is None:
        return None
    set_default_steps(scheduler, int(steps))
    return int(steps)


def _known_labels(init_from: str | None) -> list[str]:
    """The labels of the pipeline a run started from (none without one)."""
    if not init_from or not (Path(init_from) / "label_encoder").is_dir():
        return []
    return list(LabelEncoder.load_config(Path(init_from) / "label_encoder")["labels"])


def write_step_samples(
    autoencoder, ema: ExponentialMovingAverage, image, train: FlowDiffusionTrainConfig, stem
) -> None:
    """Sample every label from the fixed image with the EMA weights and write `<stem>.mp4` and `<stem>.png`."""
    output = sample_videos(
        autoencoder,
        ema.model.unet,
        ema.model.label_encoder,
        image,
        scheduler=train.sample_scheduler,
        prediction_type=train.prediction_type,
        num_inference_steps=train.sample_steps,
        guidance_scale=train.sample_guidance_scale,
        seed=train.seed,
    )
    write_samples(output, stem, fps=train.sample_fps)


def _train_config(config: RunConfig, lfae: str | Path | None) -> FlowDiffusionTrainConfig:
    if not isinstance(config.train_dm, FlowDiffusionTrainConfig):
        raise ValueError("the config has no `train_dm` section; add one (see lfdm/configs/synthface64.yaml).")
    train_config = config.train_dm
    if lfae is not None:
        train_config = dataclasses.replace(train_config, lfae=str(lfae))
        config.train_dm = train_config  # the run folder's config.yaml then names it, so --resume needs no --lfae
    if not train_config.lfae:
        raise ValueError("which autoencoder? pass --lfae DIR (a train-lfae run's model/ folder) or set train_dm.lfae.")
    return train_config


def _check_resolution(autoencoder: LatentFlowAutoencoder, config: RunConfig) -> None:
    if autoencoder.config.image_size != config.data.resolution:
        raise ValueError(
            f"the autoencoder takes {autoencoder.config.image_size} px images but data.resolution is "
            f"{config.data.resolution}; use the data config the autoencoder was trained with."
        )


def _check_autoencoder_section(autoencoder: LatentFlowAutoencoder, config: RunConfig, source: str) -> None:
    """A diffusion config's `lfae` section, where it has one (a file for both stages), must describe the autoencoder
    the run loads: a run folder must not say one thing and train on another."""
    differing = {
        key: (value, autoencoder.config[key])
        for key, value in config.lfae.items()
        if key in autoencoder.config and plain(value) != plain(autoencoder.config[key])
    }
    if differing:
        details = ", ".join(f"{key}: {ours!r} here, {theirs!r} there" for key, (ours, theirs) in differing.items())
        raise ValueError(
            f"the config's lfae section does not describe the autoencoder {source} ({details}). A diffusion run "
            "takes the autoencoder's settings from its folder: remove the lfae section or make it match."
        )


def _training_data(config: RunConfig, dataset: Dataset, autoencoder, labels: list[str], accelerator) -> Dataset:
    """Clips to compute targets from on the fly, or, for a fixed data set with `train_dm.cache_dir`, the cache."""
    train_config = config.train_dm
    unknown = sorted(set(getattr(dataset, "labels", ())) - set(labels))
    if unknown:
        raise ValueError(
            f"the data set has labels {unknown} that the `labels` section lacks; it has {labels}. Add them to "
            "labels.labels, or remove labels.labels to take the labels from the data set."
        )
    if not train_config.cache_dir:
        return dataset
    if config.data.dataset == "synthface":
        logger.info("SynthFace renders fresh clips; its targets are computed on the fly (train_dm.cache_dir unused)")
        return dataset
    return TargetCache.build(
        train_config.cache_dir,
        autoencoder,
        dataset,
        config.data,
        labels=labels,
        seed=train_config.seed,
        draws=train_config.cache_draws,
        batch_size=train_config.batch_size,
        accelerator=accelerator,
    )
