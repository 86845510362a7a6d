"""Run configs: one dataclass per section of a YAML config, loaded once at the entry point.

A config file (`lfdm/configs/*.yaml`) has the top-level sections

- `data`: `DataConfig` (`lfdm.data.factory`), which frames to train on;
- `lfae`: keyword arguments of `LatentFlowAutoencoder(**lfae)` (the model's own config, kept as a dict);
- `train_lfae`: `AutoencoderTrainConfig`, stage-one optimisation, losses and bookkeeping;
- `unet`, `labels`: keyword arguments of `FlowUNet3D` and `LabelEncoder` (dicts, used by stage two);
- `train_dm`: `FlowDiffusionTrainConfig`, stage-two optimisation, EMA, samples and bookkeeping (None when absent);
- `refiner`, `train_refiner`: `PhotoRefiner` arguments and `RefinerTrainConfig`, the photo refiner (None when absent);
- `train_distill`: `DistillTrainConfig`, a few-step student of a trained pipeline (None when absent).

Unknown keys and unknown sections raise `ValueError` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lfdm.configuration import check_choice, check_positive, dataclass_from_dict, plain
from lfdm.data.factory import DataConfig
from lfdm.schedulers import DEFAULT_STEPS, PREDICTION_TYPES

MIXED_PRECISION_MODES = ("auto", "no", "fp16", "bf16")
# The sections each stage reads, and so what its run folder's config.yaml holds: a diffusion run takes its
# autoencoder's settings from the autoencoder it loads (its config.json), not from a section of its own.
STAGE_SECTIONS = {
    "lfae": ("data", "lfae", "train_lfae"),
    "dm": ("data", "unet", "labels", "train_dm"),
    "refiner": ("data", "refiner", "train_refiner"),
    "distill": ("data", "train_distill"),
}
DISTILL_SAMPLERS = ("ddim", "dpmsolver")  # deterministic samplers a student can be taught (DDPM draws noise)


class _StageSchedule:
    """What both training stages share: lr milestones (fractions of max_steps, or step numbers) and a run folder."""

    def _check_schedule_and_folder(self, section: str) -> None:
        if any(m <= 0 for m in self.lr_milestones):
            raise ValueError(f"{section}.lr_milestones must be > 0; got {list(self.lr_milestones)}.")
        if self.output_dir is not None and any(c.isspace() for c in self.output_dir):
            raise ValueError(f"{section}.output_dir must not contain spaces; got {self.output_dir!r}.")

    def milestone_steps(self) -> list[int]:
        """The lr milestones in optimiser steps (fractions of max_steps converted, sorted)."""
        return sorted(round(m * self.max_steps) if m < 1 else int(m) for m in self.lr_milestones)


@dataclass
class AutoencoderTrainConfig(_StageSchedule):
    """Stage one: optimise the latent flow autoencoder. Defaults are the official MUG settings where one exists."""

    output_dir: str | None = None  # run folder; None -> runs/lfae-<config name>-<date>-<time> (no spaces allowed)
    init_from: str | None = None  # optional save_pretrained folder whose weights start the run (official: MRAA);
    # it may have fewer regions than `lfae.num_regions` (`lfdm.training.lfae.add_regions`)
    seed: int = 0  # seeds the weights, the data stream and the equivariance warps
    max_steps: int = 46_500  # optimiser steps (official MUG: 100 epochs x 465 steps)
    batch_size: int = 100  # pairs per process and micro-step (official: 100)
    gradient_accumulation_steps: int = 1  # micro-steps per optimiser step; effective batch = batch x this x GPUs
    learning_rate: float = 2e-4  # Adam learning rate before decay
    adam_betas: tuple[float, float] = (0.5, 0.999)  # Adam (beta1, beta2), official values
    lr_milestones: tuple[float, ...] = (0.6, 0.9)  # steps where lr *= lr_decay; values < 1: fractions of max_steps
    lr_decay: float = 0.1  # multiplicative lr decay at each milestone
    max_grad_norm: float | None = None  # clip the gradient norm to this value; None = no clipping (official)
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on a GPU that has it, else fp32) | "no" | "fp16" | "bf16"
    pyramid_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)  # reconstruction scales, each 1 or 1/n
    l1_weight: float = 10.0  # weight of the mean absolute error, per pyramid scale
    ssim_weight: float = 10.0  # weight of (1 - SSIM), per pyramid scale
    l1_motion_weight: float = 0.0  # alpha > 0 weighs each pixel's L1 by 1 + alpha * |driving - reference| / its
    # mean (not in the paper; 0 = plain L1): the pixels that moved count more
    vgg19_weight: float = 0.0  # weight of each VGG19 layer's L1 per scale (paper: 10); > 0 needs vgg19_weights
    vgg19_weights: str | None = None  # torchvision vgg19 state dict file (.pth or .safetensors) for vgg19_weight
    equivariance_shift_weight: float = 10.0  # weight of MRAA's region-centre equivariance loss (0 = off)
    equivariance_affine_weight: float = 10.0  # weight of MRAA's region-shape equivariance loss (0 = off)
    region_separation_weight: float = 0.0  # weight of the mean pairwise cosine overlap of the region heat maps
    # (not in the paper; 0 = off): pushes regions apart when they all settle on the dominant motion
    occlusion_logit_weight: float = 0.0  # weight of mean(relu(|logit| - occlusion_logit_limit)^2) over the occlusion
    # head's logits (not in the paper; 0 = off): keeps its sigmoid out of saturation, where it stops learning
    occlusion_logit_limit: float = 5.0  # |logit| allowed without penalty (sigmoid(5) = 0.993)
    sigma_affine: float = 0.05  # std of the random affine warp's matrix entries (equivariance)
    sigma_tps: float = 0.005  # std of the thin-plate-spline weights (equivariance)
    points_tps: int = 5  # thin-plate-spline control points per side (points_tps x points_tps grid)
    log_every: int = 10  # steps between JSONL log lines (averages since the last line)
    sample_every: int = 500  # steps between PNG grids of reconstructions (0 = never)
    checkpoint_every: int = 1000  # steps between resumable checkpoints (0 = only the final model)
    keep_last: int = 3  # checkpoints kept in the run folder (older ones are deleted); >= 1
    num_samples: int = 4  # pairs shown in each sample grid

    def __post_init__(self) -> None:
        check_choice("train_lfae.mixed_precision", self.mixed_precision, MIXED_PRECISION_MODES)
        check_positive(
            "train_lfae",
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate,
            log_every=self.log_every,
            keep_last=self.keep_last,
            points_tps=self.points_tps,
            num_samples=self.num_samples,
            occlusion_logit_limit=self.occlusion_logit_limit,
        )
        self._check_schedule_and_folder("train_lfae")


@dataclass
class FlowDiffusionTrainConfig(_StageSchedule):
    """Stage two: train the flow diffusion model (U-Net + label table) on the frozen LFAE's flows. Defaults are the
    official MUG settings where one exists (official_lfdm.md 2.4-2.5); the EMA and gradient clipping are additions."""

    lfae: str | None = None  # the trained autoencoder: a save_pretrained folder or a train-lfae run (also --lfae)
    init_from: str | None = None  # optional pipeline folder (a train-dm run's model/) whose U-Net and label table
    # start the run: a warm start, e.g. after retraining the autoencoder
    output_dir: str | None = None  # run folder; None -> runs/dm-<config name>-<date>-<time> (no spaces allowed)
    seed: int = 0  # seeds the weights, the data stream, the noise, timesteps and label drops, and the samples
    max_steps: int = 111_600  # optimiser steps (official MUG: 1200 epochs x 93 steps)
    batch_size: int = 5  # clips per process and micro-step (official: MUG 5, MHAD 6, NATOPS 20)
    gradient_accumulation_steps: int = 1  # micro-steps per optimiser step; effective batch = batch x this x GPUs
    learning_rate: float = 2e-4  # Adam learning rate before decay (official MUG/MHAD 2e-4, NATOPS 1e-4)
    adam_betas: tuple[float, float] = (0.9, 0.99)  # Adam (beta1, beta2), official values
    lr_milestones: tuple[float, ...] = (2 / 3, 5 / 6)  # steps where lr *= lr_decay; values < 1: fractions of
    # max_steps (official: epochs 800 and 1000 of 1200)
    lr_decay: float = 0.1  # multiplicative lr decay at each milestone
    max_grad_norm: float | None = None  # clip the gradient norm to this value; None = no clipping (official)
    prediction_type: str = "epsilon"  # what the U-Net predicts: "epsilon" (official) | "v_prediction" | "sample"
    null_label_probability: float = 0.1  # chance, per clip, of training with the null label (classifier-free
    # guidance); in [0, 1), 0 = never
    ema_decay: float = 0.999  # largest decay of the weights' exponential moving average, in [0, 1); 0 = no
    # averaging. Samples and the exported model use the average
    ema_warmup: bool = True  # ramp the decay as (1 + n) / (10 + n) after n averaging steps, up to ema_decay
    ema_start_step: int = 0  # optimiser steps before averaging starts (until then the average copies the weights)
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on a GPU that has it, else fp32) | "no" | "fp16" | "bf16"
    cache_dir: str | None = None  # real videos: folder for the LFAE targets, computed once (None = compute them
    # every step, as SynthFace always does); a sub-folder per LFAE + data config
    cache_draws: int = 1  # real videos with cache_dir: passes over the data set stored in the cache (each pass
    # draws new frames and colour jitter); training then cycles over these
    log_every: int = 10  # steps between JSONL log lines (averages since the last line)
    sample_every: int = 1000  # steps between sample videos of every label from one test image (0 = never)
    sample_scheduler: str = "dpmsolver"  # sampler of the samples and of the exported pipeline: "ddpm" | "ddim" |
    # "dpmsolver" | "unipc"
    sample_steps: int | None = None  # sampling steps of the samples; None = the sampler's default (dpmsolver: 25)
    sample_guidance_scale: float = 1.0  # classifier-free guidance of the samples; 1.0 = one conditional pass
    sample_fps: float = 8.0  # frame rate of the sample mp4 files
    checkpoint_every: int = 2000  # steps between resumable checkpoints (0 = only the final model)
    keep_last: int = 3  # checkpoints kept in the run folder (older ones are deleted); >= 1

    def __post_init__(self) -> None:
        check_choice("train_dm.mixed_precision", self.mixed_precision, MIXED_PRECISION_MODES)
        check_choice("train_dm.sample_scheduler", self.sample_scheduler, tuple(DEFAULT_STEPS))
        check_choice("train_dm.prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_positive(
            "train_dm",
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate,
            log_every=self.log_every,
            keep_last=self.keep_last,
            cache_draws=self.cache_draws,
            sample_fps=self.sample_fps,
        )
        if not 0 <= self.null_label_probability < 1:
            raise ValueError(f"train_dm.null_label_probability must be in [0, 1); got {self.null_label_probability}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train_dm.ema_decay must be in [0, 1); got {self.ema_decay}.")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"train_dm.sample_steps must be >= 1 or null (the default); got {self.sample_steps}.")
        self._check_schedule_and_folder("train_dm")


@dataclass
class RefinerTrainConfig(_StageSchedule):
    """The photo refiner (`lfdm.models.refiner`): learns to paint new content at `refiner.scale` x the LFAE's size
    from SynthFace pairs rendered that large (data.resolution must be that size) through a frozen LFAE."""

    lfae: str | None = None  # the trained autoencoder: a save_pretrained folder, a pipeline folder or a train-lfae run
    init_from: str | None = None  # optional refiner folder (or pipeline folder with refiner/) to start from
    output_dir: str | None = None  # run folder; None -> runs/refiner-<config name>-<date>-<time> (no spaces allowed)
    seed: int = 0  # seeds the weights, the data stream and the crops
    max_steps: int = 2000  # optimiser steps
    batch_size: int = 8  # pairs per process and micro-step
    gradient_accumulation_steps: int = 1  # micro-steps per optimiser step
    pool_size: int = 1200  # pairs made into training examples once, before the first step (RefinerExamples)
    crops_per_pair: int = 3  # crops taken from each pair of the pool
    cache_dir: str | None = None  # folder where the pool is saved and read back (a resumed run skips making it)
    crop: int = 128  # side of the training crops (multiple of 4), in refiner pixels
    new_content_crops: float = 0.75  # fraction of crops centred where content is newest (mouths, eyes)
    learning_rate: float = 1e-3  # Adam learning rate before decay
    adam_betas: tuple[float, float] = (0.9, 0.99)  # Adam (beta1, beta2)
    lr_milestones: tuple[float, ...] = (0.7, 0.9)  # steps where lr *= lr_decay; values < 1: fractions of max_steps
    lr_decay: float = 0.3  # multiplicative lr decay at each milestone
    max_grad_norm: float | None = 1.0  # clip the gradient norm to this value; None = no clipping
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on a GPU that has it, else fp32) | "no" | "fp16" | "bf16"
    l1_weight: float = 1.0  # weight of the mean absolute error of the refined frame
    gradient_weight: float = 1.0  # weight of the mean absolute error of its horizontal and vertical differences
    # (detail: a blurred frame pays for every edge it softens)
    gate_weight: float = 0.01  # weight of the gate's mean: take the photo's warped pixels unless painting pays
    log_every: int = 10  # steps between JSONL log lines (averages since the last line)
    sample_every: int = 250  # steps between PNG grids of refined crops (0 = never)
    checkpoint_every: int = 250  # steps between resumable checkpoints (0 = only the final model)
    keep_last: int = 2  # checkpoints kept in the run folder (older ones are deleted); >= 1
    num_samples: int = 4  # pairs shown in each sample grid

    def __post_init__(self) -> None:
        check_choice("train_refiner.mixed_precision", self.mixed_precision, MIXED_PRECISION_MODES)
        check_positive(
            "train_refiner",
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            crop=self.crop,
            pool_size=self.pool_size,
            crops_per_pair=self.crops_per_pair,
            learning_rate=self.learning_rate,
            log_every=self.log_every,
            keep_last=self.keep_last,
            num_samples=self.num_samples,
        )
        if self.crop % 4:
            raise ValueError(f"train_refiner.crop must be a multiple of 4; got {self.crop}.")
        if not 0 <= self.new_content_crops <= 1:
            raise ValueError(f"train_refiner.new_content_crops must be in [0, 1]; got {self.new_content_crops}.")
        self._check_schedule_and_folder("train_refiner")


@dataclass
class DistillTrainConfig(_StageSchedule):
    """Sampler distillation (`lfdm.training.distill`): a student U-Net, started from the teacher's, learns to give in
    `steps` sampling steps the clean latents the teacher pipeline's own sampler gives from the same noise."""

    teacher: str | None = None  # the trained pipeline folder to distil (e.g. checkpoints; also --teacher)
    output_dir: str | None = None  # run folder; None -> runs/distill-<config name>-<date>-<time> (no spaces allowed)
    seed: int = 0  # seeds the pool's images and noise, and the data stream
    steps: int = 1  # the student's sampling steps k (also --steps); the exported pipeline's default
    sampler: str = "dpmsolver"  # the student's sampler: "dpmsolver" | "ddim" (at 1 step they are the same)
    teacher_steps: int | None = None  # the teacher's sampling steps; None = its default (its scheduler config)
    teacher_guidance_scale: float = 1.0  # classifier-free guidance of the teacher's samples (the student runs 1.0)
    num_images: int = 256  # pictures (frame 0 of training clips) in the pool; each is sampled with every label
    cache_dir: str | None = None  # folder where the pool is saved and read back (a resumed run skips making it)
    pool_batch_size: int = 16  # examples per teacher call while the pool is made
    max_steps: int = 4000  # optimiser steps
    batch_size: int = 8  # pool examples per process and micro-step
    gradient_accumulation_steps: int = 1  # micro-steps per optimiser step
    learning_rate: float = 2e-5  # Adam learning rate before decay (small: the student starts at the teacher)
    adam_betas: tuple[float, float] = (0.9, 0.99)  # Adam (beta1, beta2)
    lr_milestones: tuple[float, ...] = (0.8,)  # steps where lr *= lr_decay; values < 1: fractions of max_steps
    lr_decay: float = 0.1  # multiplicative lr decay at each milestone
    max_grad_norm: float | None = 1.0  # clip the gradient norm to this value; None = no clipping
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on a GPU that has it, else fp32) | "no" | "fp16" | "bf16"
    log_every: int = 10  # steps between JSONL log lines (averages since the last line)
    sample_every: int = 500  # steps between sample videos of every label at the student's steps (0 = never)
    sample_fps: float = 8.0  # frame rate of the sample mp4 files
    checkpoint_every: int = 500  # steps between resumable checkpoints (0 = only the final model)
    keep_last: int = 2  # checkpoints kept in the run folder (older ones are deleted); >= 1

    def __post_init__(self) -> None:
        check_choice("train_distill.mixed_precision", self.mixed_precision, MIXED_PRECISION_MODES)
        check_choice("train_distill.sampler", self.sampler, DISTILL_SAMPLERS)
        check_positive(
            "train_distill",
            steps=self.steps,
            num_images=self.num_images,
            pool_batch_size=self.pool_batch_size,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate,
            log_every=self.log_every,
            keep_last=self.keep_last,
            sample_fps=self.sample_fps,
        )
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise ValueError(
                f"train_distill.teacher_steps must be >= 1 or null (the teacher's default); got {self.teacher_steps}."
            )
        self._check_schedule_and_folder("train_distill")


@dataclass
class RunConfig:
    """A whole config file. Model sections are dicts passed as keyword arguments to the model constructors."""

    data: DataConfig = field(default_factory=DataConfig)
    lfae: dict[str, Any] = field(default_factory=dict)  # LatentFlowAutoencoder(**lfae)
    train_lfae: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)
    unet: dict[str, Any] | None = None  # FlowUNet3D(**unet), stage two
    labels: dict[str, Any] | None = None  # LabelEncoder(**labels), stage two
    train_dm: FlowDiffusionTrainConfig | None = None  # stage two; None when the file has no train_dm section
    refiner: dict[str, Any] | None = None  # PhotoRefiner(**refiner), the photo refiner
    train_refiner: RefinerTrainConfig | None = None  # the photo refiner; None when the file has no such section
    train_distill: DistillTrainConfig | None = None  # a few-step student; None when the file has no such section
    name: str = "run"  # the config's name (file stem), used for default run folders; not a YAML key

    @classmethod
    def from_dict(cls, sections: dict[str, Any], *, name: str = "run") -> RunConfig:
        if not isinstance(sections, dict):
            raise ValueError(f"a config file must be a mapping of sections; got {type(sections).__name__}.")
        valid = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
        unknown = sorted(set(sections) - set(valid))
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; valid sections: {valid}.")
        train_dm = sections.get("train_dm")
        if train_dm is not None:
            train_dm = dataclass_from_dict(FlowDiffusionTrainConfig, train_dm, "train_dm")
        train_refiner = sections.get("train_refiner")
        if train_refiner is not None:
            train_refiner = dataclass_from_dict(RefinerTrainConfig, train_refiner, "train_refiner")
        train_distill = sections.get("train_distill")
        if train_distill is not None:
            train_distill = dataclass_from_dict(DistillTrainConfig, train_distill, "train_distill")
        data = sections.get("data") or {}
        # Older run folders name the only stage-one frame sampling there is; accepted, and no longer written.
        if isinstance(data, dict) and data.get("lfae_frame_sampling") == "pair":
            data = {key: value for key, value in data.items() if key != "lfae_frame_sampling"}
        return cls(
            data=dataclass_from_dict(DataConfig, data, "data"),
            lfae=dict(sections.get("lfae") or {}),
            train_lfae=dataclass_from_dict(AutoencoderTrainConfig, sections.get("train_lfae") or {}, "train_lfae"),
            unet=sections.get("unet"),
            labels=sections.get("labels"),
            train_dm=train_dm,
            refiner=sections.get("refiner"),
            train_refiner=train_refiner,
            train_distill=train_distill,
            name=name,
        )

    def to_dict(self, stage: str | None = None) -> dict[str, Any]:
        """The config as plain YAML-ready data (tuples become lists), sections in file order; with `stage` (a key of
        `STAGE_SECTIONS`) only the sections that stage reads (`STAGE_SECTIONS`)."""
        sections = {"data": self.data, "lfae": self.lfae, "train_lfae": self.train_lfae}
        sections.update({"unet": self.unet, "labels": self.labels, "train_dm": self.train_dm})
        sections.update({"refiner": self.refiner, "train_refiner": self.train_refiner})
        sections["train_distill"] = self.train_distill
        if stage is not None:
            sections = {key: value for key, value in sections.items() if key in STAGE_SECTIONS[stage]}
        return {key: plain(value) for key, value in sections.items() if value is not None}


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML config file into a `RunConfig` (the file stem becomes `name`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found; the shipped ones are in lfdm/configs/.")
    with path.open() as file:
        sections = yaml.safe_load(file) or {}
    return RunConfig.from_dict(sections, name=path.stem)


def save_config(config: RunConfig, path: str | Path, stage: str | None = None) -> Path:
    """Write the resolved config as YAML (loadable with `load_config`): the sections of `stage`, or all."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.to_dict(stage), sort_keys=False))
    return path
