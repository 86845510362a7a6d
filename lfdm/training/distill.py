"""Sampler distillation: a student U-Net that samples in 1 or 2 steps what the teacher pipeline samples in its own.

    python -m lfdm distill --teacher checkpoints --steps 1 --output-dir runs/distill-1 --cache-dir runs/distill-pool
    python -m lfdm distill --resume runs/distill-1 --max-steps 8000        # continue a run
    python -m lfdm generate --model runs/distill-1/model ...               # samples at 1 step by default

Notation (variable -> paper): `noise` -> x_T ~ N(0, I), (B, 3, F, h, w); `target` -> the teacher's sample x_0 of the
same shape, channels [flow_x, flow_y, 2*occlusion - 1] (as `LFDMPipeline.sample_flows` holds them: displacements when
the U-Net diffuses residual flows); `features` -> z_0 = Phi(image), (B, C, h, w); `embedding` -> e(y), (B, D).

Why this design (knowledge distillation of the sampler, Luhman & Luhman 2021, "Knowledge distillation in iterative
generative models"): the shipped teacher already samples in 4 DPM-Solver++ steps, so one round of "teacher output
from the same noise" covers the whole way to 1 or 2 steps. Progressive distillation (Salimans & Ho 2022) would need
two rounds (4 -> 2 -> 1) for the same result, and consistency distillation a new training target and sampler; both
are more machinery for a teacher this cheap. The price of Luhman & Luhman, a pool of teacher samples, is small here:
4 U-Net calls per example.

1. The pool (`DistillationPool`), made once with the frozen teacher: `num_images` pictures (frame 0 of training clips
   of the config's `data`, SynthFace or a folder of videos), each with every label of the teacher and one fixed x_T
   per (picture, label); the teacher's own sampler (its scheduler, `teacher_steps` or its default count, guidance
   `teacher_guidance_scale`) gives x_0. Saved under `cache_dir` and read back on the next start.
2. The student starts as a copy of the teacher's U-Net. Its loss is ||S_k(x_T) - x_0||^2, where S_k is the student
   run through the exported sampler (`sample_latents`: the same scheduler family on the teacher's schedule, `steps`
   = k, no guidance), back-propagated through all k steps: the student learns exactly the computation it will do at
   inference, dynamic thresholding and all.
3. The export is a whole pipeline folder: the teacher's autoencoder, label table (and refiner, if any), the student
   U-Net and a scheduler whose config says {sampler: k} as the model's default steps
   (`lfdm.schedulers.MODEL_DEFAULT_STEPS_KEY`), so the app, `generate` and `evaluate` sample it at k steps.

The U-Net must predict x_0 or v (the shipped model predicts x_0): the first step starts at t = 999, where an
epsilon prediction is divided by sqrt(alpha_bar_999) ~ 1.5e-5 to give x_0, which no student can learn to hit.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lfdm.guidance import guided_model_output
from lfdm.models.unet3d import FlowUNet3D
from lfdm.schedulers import MODEL_DEFAULT_STEPS_KEY, make_scheduler, sampler_name, set_default_steps
from lfdm.training import loop
from lfdm.training.config import DistillTrainConfig, RunConfig
from lfdm.training.dm_samples import sample_image, sample_videos, write_samples
from lfdm.training.loop import Stage
from lfdm.training.stream import SampleStream, training_dataset

logger = logging.getLogger(__name__)

POOL_FORMAT = 1  # bump when the pool file's contents change meaning


def sample_latents(
    unet: FlowUNet3D,
    scheduler,
    noise: torch.Tensor,
    features: torch.Tensor,
    embeddings: torch.Tensor,
    *,
    num_steps: int,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """The sampler loop of `LFDMPipeline.sample_flows` (steps 4-5) from given noise, differentiable in the U-Net:
    noise x_T (B, 3, F, h, w) -> x_0 (B, 3, F, h, w), float32. features (B, C, h, w), embeddings (B, D).

    `scheduler` is set to `num_steps` here; deterministic samplers only (DDPM would draw its own noise)."""
    scheduler.set_timesteps(num_steps, device=noise.device)
    latents = noise.float() * scheduler.init_noise_sigma
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, timestep).to(unet.dtype)
        timesteps = timestep.to(latents.device).expand(latents.shape[0])
        output = guided_model_output(unet, model_input, timesteps, features, embeddings, guidance_scale)
        latents = scheduler.step(output.float(), timestep, latents).prev_sample
    return latents


def student_scheduler(teacher_config, sampler: str, steps: int):
    """The student's sampler `sampler` on the teacher's schedule (betas, prediction type, thresholding), whose
    config names `steps` as the only measured default (the teacher's counts do not hold for the student)."""
    base = {key: value for key, value in dict(teacher_config).items() if key != MODEL_DEFAULT_STEPS_KEY}
    return set_default_steps(make_scheduler(sampler, base), steps)


def check_teacher(teacher) -> None:
    """Raise ValueError when the teacher's U-Net predicts the noise (see the module docstring) or its sampler is not
    deterministic."""
    if teacher.scheduler.config.prediction_type == "epsilon":
        raise ValueError(
            "the teacher's U-Net predicts the noise (prediction_type 'epsilon'); a 1- or 2-step student starts at "
            "t = 999, where that cannot give x_0. Distil a model trained with prediction_type 'sample' or "
            "'v_prediction' (train-dm's train_dm.prediction_type)."
        )
    if sampler_name(teacher.scheduler) == "ddpm":
        raise ValueError(
            "the teacher's sampler is DDPM, which draws fresh noise every step; make a deterministic sampler its "
            "default first (python -m lfdm choose-default), e.g. dpmsolver."
        )


class DistillationPool(Dataset):
    """The teacher's samples, made once (module docstring, 1.). Items are dicts of float32 tensors: noise, target
    (3, F, h, w), features (C, h, w), embedding (D,).

    `meta` says what made the pool (teacher folder, steps, guidance, seed, pictures, labels); a cache file made by
    anything else is not used. `cache_file`: where the pool is saved after it is made and read from on the next start.
    """

    def __init__(self, teacher, pictures: Dataset, train: DistillTrainConfig, *, teacher_path: str, cache_file=None):
        self.meta = {
            "format": POOL_FORMAT,
            "teacher": str(Path(teacher_path).resolve()),
            "teacher_sampler": type(teacher.scheduler).__name__,
            "teacher_steps": int(train.teacher_steps or teacher.default_num_inference_steps),
            "teacher_guidance_scale": float(train.teacher_guidance_scale),
            "seed": int(train.seed),
            "num_images": int(train.num_images),
            "labels": list(teacher.labels),
        }
        if cache_file is not None and Path(cache_file).is_file():
            stored = torch.load(cache_file, weights_only=True)
            if stored.get("meta") == self.meta:
                self.tensors = {key: value for key, value in stored.items() if key != "meta"}
                logger.info("read %d distillation examples from %s", len(self), cache_file)
                return
            logger.info(
                "%s was made by another teacher or setting %s; making the pool again", cache_file, stored["meta"]
            )
        self.tensors = make_pool(teacher, pictures, train, self.meta["teacher_steps"])
        if cache_file is not None:
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"meta": self.meta, **self.tensors}, cache_file)
            logger.info("saved the distillation pool to %s", cache_file)

    def __len__(self) -> int:
        return len(self.tensors["target"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "noise": self.tensors["noise"][index],
            "target": self.tensors["target"][index],
            "features": self.tensors["features"][self.tensors["image_index"][index]],
            "embedding": self.tensors["embeddings"][self.tensors["label_index"][index]],
        }


@torch.no_grad()
def make_pool(teacher, pictures: Dataset, train: DistillTrainConfig, teacher_steps: int) -> dict[str, torch.Tensor]:
    """The pool's tensors (on the CPU): features (N_images, C, h, w), embeddings (L, D) of the teacher's labels,
    and per example (picture-major, every label of a picture in a row) noise and target (N, 3, F, h, w), image_index
    and label_index (N,)."""
    device, labels = teacher.device, list(teacher.labels)
    stream = SampleStream(pictures, seed=train.seed)
    features = []
    for start in range(0, train.num_images, train.pool_batch_size):
        frames = [stream[n]["video"][:, 0] for n in range(start, min(start + train.pool_batch_size, train.num_images))]
        pixels = torch.stack(frames).to(device=device, dtype=teacher.lfae.dtype)  # (B, 3, H, W) frame 0s
        features.append(teacher.lfae.encode(pixels).float().cpu())
    features = torch.cat(features)
    embeddings = teacher.encode_labels(labels).float().cpu()
    image_index = torch.arange(train.num_images).repeat_interleave(len(labels))
    label_index = torch.arange(len(labels)).repeat(train.num_images)
    unet = teacher.unet
    shape = (3, unet.config.num_frames, teacher.latent_size, teacher.latent_size)
    generator = torch.Generator().manual_seed(train.seed)
    noise = torch.randn((len(image_index), *shape), generator=generator)
    targets = []
    for start in range(0, len(image_index), train.pool_batch_size):
        chunk = slice(start, start + train.pool_batch_size)
        target = sample_latents(
            unet,
            teacher.scheduler,
            noise[chunk].to(device),
            features[image_index[chunk]].to(device=device, dtype=unet.dtype),
            embeddings[label_index[chunk]].to(device=device, dtype=unet.dtype),
            num_steps=teacher_steps,
            guidance_scale=train.teacher_guidance_scale,
        )
        targets.append(target.cpu())
        if (start // train.pool_batch_size) % 20 == 0:
            logger.info("distillation pool: %d of %d examples", start + len(target), len(image_index))
    return {
        "noise": noise,
        "target": torch.cat(targets),
        "features": features,
        "embeddings": embeddings,
        "image_index": image_index,
        "label_index": label_index,
    }


class StudentSampler(nn.Module):
    """The student U-Net run through its k-step sampler; `forward` is the distillation loss of one batch, so that
    data-parallel training sees every use of the weights inside it."""

    def __init__(self, unet: FlowUNet3D, scheduler, num_steps: int) -> None:
        super().__init__()
        self.unet, self.scheduler, self.num_steps = unet, scheduler, num_steps

    def forward(self, noise, features, embeddings, target) -> torch.Tensor:
        """noise, target (B, 3, F, h, w); features (B, C, h, w); embeddings (B, D) -> the scalar MSE between the
        student's k-step sample and the teacher's."""
        sample = sample_latents(
            self.unet,
            self.scheduler,
            noise,
            features.to(self.unet.dtype),
            embeddings.to(self.unet.dtype),
            num_steps=self.num_steps,
        )
        return F.mse_loss(sample.float(), target.float())


class DistillationStage(Stage):
    """Sampler distillation in the shared loop (`lfdm.training.loop`): the pool, the student, the loss of the module
    docstring, sample videos at k steps and the student pipeline as the export."""

    name = "distill"

    def __init__(self, config: RunConfig, teacher: str | Path | None = None, steps: int | None = None) -> None:
        if config.train_distill is None:
            raise ValueError("the config has no train_distill section; start from lfdm/configs/distill64.yaml.")
        overrides = {key: value for key, value in (("teacher", teacher), ("steps", steps)) if value is not None}
        if overrides:  # the run folder's config.yaml then names them, so --resume needs neither
            config.train_distill = dataclasses.replace(config.train_distill, **overrides)
        self.config, self.train = config, config.train_distill
        if not self.train.teacher:
            raise ValueError("which model to distil? pass --teacher DIR (a pipeline folder, e.g. checkpoints).")

    def build(self, accelerator) -> tuple[StudentSampler, DistillationPool]:
        self.teacher = load_teacher(self.train.teacher).to(accelerator.device)
        if self.config.data.resolution != self.teacher.image_size:
            raise ValueError(
                f"the teacher takes {self.teacher.image_size} px pictures but data.resolution is "
                f"{self.config.data.resolution}; set data.resolution to {self.teacher.image_size}."
            )
        pictures = training_dataset(self.config.data, view="clip")
        cache = (
            self.train.cache_dir and Path(self.train.cache_dir) / f"pool-{self.train.num_images}-{self.train.seed}.pt"
        )
        with accelerator.main_process_first():  # the main process makes and saves the pool; the others read it
            pool = DistillationPool(
                self.teacher, pictures, self.train, teacher_path=self.train.teacher, cache_file=cache or None
            )
        student = copy.deepcopy(self.teacher.unet).requires_grad_(True).train()
        scheduler = student_scheduler(self.teacher.scheduler.config, self.train.sampler, self.train.steps)
        return StudentSampler(student, scheduler, self.train.steps), pool

    def losses(self, accelerator, training_model, batch, micro_batch: int) -> dict[str, torch.Tensor]:
        inputs = [batch[key].to(accelerator.device, non_blocking=True) for key in ("noise", "features", "embedding")]
        target = batch["target"].to(accelerator.device, non_blocking=True)
        with accelerator.autocast():
            return {"loss": training_model(*inputs, target)}

    def prepare_samples(self, dataset: Dataset) -> None:
        self.image = sample_image(self.config.data) if self.train.sample_every else None

    def write_samples(self, model: StudentSampler, stem: Path) -> None:
        """Every label from the fixed test picture, sampled by the student at its k steps (`<stem>.mp4`, `.png`)."""
        was_training = model.training
        output = sample_videos(
            self.teacher.lfae,
            model.unet.eval(),
            self.teacher.label_encoder,
            self.image,
            scheduler=self.train.sampler,
            prediction_type=self.teacher.scheduler.config.prediction_type,
            num_inference_steps=self.train.steps,
            seed=self.train.seed,
        )
        model.train(was_training)
        write_samples(output, stem, fps=self.train.sample_fps)

    def export(self, model: StudentSampler) -> StudentPipelineExport:
        return StudentPipelineExport(self.teacher, model.unet, self.train)


class StudentPipelineExport:
    """What a checkpoint's `model/` and the run's `model/` hold: the teacher's pipeline with the student U-Net and
    the student's sampler and default steps (module docstring, 3.), and a model card that says so."""

    def __init__(self, teacher, student: FlowUNet3D, train: DistillTrainConfig) -> None:
        self.teacher, self.student, self.train = teacher, student, train

    def save_pretrained(self, folder: str | Path) -> None:
        from lfdm.pipeline import LFDMPipeline

        teacher = self.teacher
        pipe = LFDMPipeline(
            lfae=teacher.lfae,
            unet=self.student,
            scheduler=student_scheduler(teacher.scheduler.config, self.train.sampler, self.train.steps),
            label_encoder=teacher.label_encoder,
            refiner=getattr(teacher, "refiner", None),
        )
        pipe.save_pretrained(folder)
        card = Path(self.train.teacher) / "README.md"
        lines = [
            f"A {self.train.steps}-step student of `{self.train.teacher}`, trained with `python -m lfdm distill`: its "
            f"U-Net samples with {self.train.sampler} in {self.train.steps} step(s) what the teacher samples with its "
            "own default sampler.",
            "",
        ]
        if card.is_file():
            lines += ["The teacher's card:", "", card.read_text(encoding="utf-8")]
        (Path(folder) / "README.md").write_text("\n".join(lines), encoding="utf-8")


def load_teacher(folder: str | Path):
    """The pipeline folder `folder` in eval mode, gradients off, float32 on the CPU; checked by `check_teacher`."""
    from lfdm.pipeline import LFDMPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the teacher {str(folder)!r} is not a pipeline folder (no model_index.json); pass checkpoints or a "
            "train-dm run's model/ folder."
        )
    teacher = LFDMPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    teacher.set_progress_bar_config(disable=True)
    for module in (teacher.lfae, teacher.unet, teacher.label_encoder):
        module.eval().requires_grad_(False)
    check_teacher(teacher)
    return teacher


def train(
    config: RunConfig, teacher: str | Path | None = None, steps: int | None = None, resume: str | None = None
) -> Path:
    """Distil as `config` says; `teacher`: the pipeline folder (else `train_distill.teacher`); `steps`: the student's
    k (else `train_distill.steps`); `resume`: a run or checkpoint folder. Returns the run folder; its `model/` is a
    pipeline folder that samples at k steps by default."""
    return loop.train(DistillationStage(config, teacher, steps), resume)
